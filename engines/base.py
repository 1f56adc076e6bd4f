"""The one interface every runtime backend implements (Polygraphy-runner style)."""

from __future__ import annotations

import abc
import dataclasses
import enum
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stbn import devices
from stbn.checkpoint import LoadedCheckpoint, load_checkpoint
from stbn.model import STBN
from stbn.step import GRAPHS, graph_names
from stbn.weights import resolve_checkpoint
from stbn.yamlconfig import enum_member


class Backend(str, enum.Enum):
    """The runtime an engine runs on (``engine.backend``); AUTO picks one per machine (engines.factory)."""

    AUTO = "auto"
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


class Precision(str, enum.Enum):
    """The arithmetic of the step graphs (``engine.precision``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class EngineError(RuntimeError):
    """A backend that cannot be built or run as configured (missing package, no device, ...)."""


class BackendUnavailable(EngineError):
    """The backend's package or device is not present on this machine."""


@dataclass(frozen=True)
class EngineConfig:
    """What to run and how. ``checkpoint`` is one of our STBN checkpoints (weights + config)."""

    backend: Backend = Backend.AUTO
    checkpoint: str = ""  # "" or "shipped": the shipped weights of `preset` (cpu-rt); see stbn.weights
    # the model for correlated (camera) noise: "" or "shipped": the one shipped for the main model's
    # preset (stbn.weights.CAMERA_MODELS), "none": the main model on the 2x2 phases, or a checkpoint
    camera_checkpoint: str = ""
    preset: str | None = None  # when set, the checkpoint must hold this preset
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: Precision = Precision.FP32
    channels_last: bool = False
    compile: bool = False  # torch.compile (PyTorch backend)
    threads: int = 0  # intra-op threads on the CPU; 0 = library default
    # exported/compiled graphs; None: $STBN_CACHE/engines, else the user's cache directory
    # ($XDG_CACHE_HOME or ~/.cache)/stbn/engines. Never relative to the working directory of a later
    # process: a relative path is made absolute where the engine is created.
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "backend", enum_member(Backend, self.backend, "engine.backend"))
        object.__setattr__(self, "precision", enum_member(Precision, self.precision, "engine.precision"))
        if self.threads < 0:
            raise ValueError("engine.threads must be >= 0")

    def replace(self, **changes: Any) -> EngineConfig:
        return dataclasses.replace(self, **changes)


class Engine(abc.ABC):
    """Runs the named step graphs of :mod:`stbn.step` for one resolution.

    Arrays passed between calls are backend-native handles (torch tensors, numpy arrays, device
    buffers); callers pass them back unchanged and only convert frames with ``upload`` and
    ``download``. Usable as a context manager; ``close`` releases device memory.
    """

    name: str = "engine"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        """``model`` overrides the configured checkpoint (tests, benchmarks)."""
        self.config = config
        # what the checkpoint carries besides the weights (noise model, training metadata); None
        # when a model was handed in
        self.checkpoint: LoadedCheckpoint | None = None
        if model is None:
            path = resolve_checkpoint(config.checkpoint, config.preset)
            self.checkpoint = load_checkpoint(path, preset=config.preset)
            model = self.checkpoint.model
        self.model = model.eval()
        self.resolution: tuple[int, int] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, height: int, width: int) -> None:
        """Compile, export or load the graphs for frames of ``height`` x ``width``."""

    @property
    def bidirectional(self) -> bool:
        return self.model.config.bidirectional

    def run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        """Run one graph of :data:`stbn.step.GRAPHS`; returns a tuple of backend-native arrays.

        Checks that the engine is built, that the graph exists for this model and that it gets
        as many inputs as its contract names, then calls the backend's :meth:`_run`.
        """
        if self.resolution is None:
            raise EngineError(f"build() the {self.name} engine before running {graph!r}")
        names = graph_names(self.bidirectional)
        if graph not in names:
            raise EngineError(f"the {self.name} engine has no graph {graph!r} for this model; it has {names}")
        expected = GRAPHS[graph].inputs_for(self.bidirectional)
        if len(inputs) != len(expected):
            raise EngineError(f"graph {graph!r} takes {len(expected)} inputs {expected}, got {len(inputs)}")
        return self._run(graph, *inputs)

    @abc.abstractmethod
    def _run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        """The backend's run of one checked graph call."""

    @abc.abstractmethod
    def upload(self, array: np.ndarray) -> Any:
        """Host array (a uint8 frame, a small float vector) -> backend-native array."""

    @abc.abstractmethod
    def download(self, handle: Any) -> np.ndarray:
        """Backend-native array -> host numpy array."""

    def describe(self) -> str:
        """One line: backend, device, precision."""
        return f"{self.name} ({self.config.precision.value})"

    def warmup(self, iterations: int = 2) -> None:
        """Stream dummy frames through the real streaming loop, causal and with look-ahead (every
        graph runs), so that the first real frame pays no set-up cost."""
        from stbn.noise_estimation import NoiseConfig, NoiseMode
        from stbn.streaming import StreamingDenoiser

        if self.resolution is None:
            raise EngineError("build() the engine before warmup()")
        frame = np.zeros((*self.resolution, 3), np.uint8)
        for lookahead in (0, 1):
            denoiser = StreamingDenoiser(self, lookahead, NoiseConfig(mode=NoiseMode.FIXED, sigma=25.0))
            for seq in range(iterations + lookahead):
                denoiser.push(frame, seq)
            denoiser.flush()

    # -- weight swaps (online adaptation) ---------------------------------------------------------
    def prepare_weights(self, state_dict: dict[str, Any]) -> Any:
        """Get new weights ready to run; may be slow (an export, a build) and runs off the hot path.

        Checks that ``state_dict`` fits this engine's model (same keys and shapes), then returns a
        token for :meth:`swap_weights`.
        """
        own = self.model.state_dict()
        if set(state_dict) != set(own):
            raise EngineError(f"weights do not fit the model: {sorted(set(state_dict) ^ set(own))[:4]}")
        wrong = [k for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
        if wrong:
            raise EngineError(f"weights do not fit the model: shapes differ for {wrong[:4]}")
        if self.resolution is None:
            raise EngineError("build() the engine before preparing weights")
        return self._prepare_weights(state_dict)

    def _prepare_weights(self, state_dict: dict[str, Any]) -> Any:
        raise EngineError(f"the {self.name} backend cannot swap weights while running")

    def swap_weights(self, prepared: Any) -> None:
        """Run the prepared weights from the next graph call on; fast, called between frames."""
        raise EngineError(f"the {self.name} backend cannot swap weights while running")

    def close(self) -> None:
        """Release resources (idempotent)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_device(name: str) -> torch.device:
    """stbn.devices' rule, a missing CUDA device as this layer's BackendUnavailable."""
    try:
        return devices.resolve_device(name)
    except devices.DeviceUnavailable as exc:
        raise BackendUnavailable(str(exc)) from None


def upload_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """Host array -> tensor on ``device`` (uint8 frames travel as uint8 and are converted there)."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def download_tensor(handle: torch.Tensor) -> np.ndarray:
    return handle.detach().cpu().numpy()


def default_cache_dir() -> Path:
    """Where engines cache their graphs unless configured: see :attr:`EngineConfig.cache_dir`."""
    if os.environ.get("STBN_CACHE"):
        return Path(os.environ["STBN_CACHE"]).expanduser() / "engines"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "stbn" / "engines"


def cache_path(config: EngineConfig, key: str, suffix: str) -> Path:
    base = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    path = base.resolve() / f"{key}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
