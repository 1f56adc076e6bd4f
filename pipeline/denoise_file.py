"""``stbn denoise INPUT OUTPUT``: denoise a video file or a folder of frames, optionally after a few
self-supervised adaptation steps on the input itself.

INPUT: a video file (PyAV) or a folder of image frames (sorted by name). OUTPUT: a video file
(by its suffix) or a folder of PNG frames (the input's names for a folder, numbered for a video).
The output is written under a ``.partial`` name and renamed when complete, so a failed or
interrupted run never leaves an output that looks complete. Frames are decoded and denoised a
chunk at a time: memory does not grow with the length of the input (the sigma estimate and
adaptation read its first HEAD_FRAMES frames).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import itertools
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Backend
from pipeline.viewer.compare import ComparePicker, pick_frames, write_compare_page
from stbn.adapt import CORRELATED_NOISE_SKIP, Objective
from stbn.finishing import finish_camera_frame
from stbn.io import IMAGE_SUFFIXES, image_files, input_compression
from stbn.noise_estimation import Compression, Correlation, FrameNoise, NoiseFamily
from stbn.weights import resolve_checkpoint


class Stage(str, enum.Enum):
    """What a progress bar asked of ``progress(stage, total)`` counts."""

    ADAPT = "adapt"  # adaptation steps
    DENOISE = "denoise"  # frames written


WRITABLE_VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")  # containers that take H.264


class DenoiseError(Exception):
    """A named, user-facing failure of ``stbn denoise``."""


class InputNotFound(DenoiseError):
    pass


class UndecodableInput(DenoiseError):
    pass


class EmptyInput(DenoiseError):
    pass


class MixedFrameSizes(DenoiseError):
    pass


class UnwritableOutput(DenoiseError):
    pass


class OutputExists(DenoiseError):
    pass


class BadCheckpoint(DenoiseError):
    pass


HEAD_FRAMES = 64  # frames read ahead for the sigma estimate and adaptation (a memory bound)


@dataclass(frozen=True)
class VideoInput:
    """An input decoded lazily: memory holds the first frames and a chunk, whatever the length."""

    head: np.ndarray  # (n <= HEAD_FRAMES, H, W, 3) uint8 RGB: the first frames, read ahead
    rest: Iterator[np.ndarray]  # the frames after them, decoded on demand
    names: tuple[str, ...] | None  # file names of a frame folder; None for a video
    fps: float
    count: int | None  # frames, where known in advance
    compression: Compression = Compression.UNKNOWN  # what the input's format says of its encoding

    def frames(self) -> Iterator[np.ndarray]:
        yield from self.head
        yield from self.rest


@dataclass(frozen=True)
class Clip:
    """A whole input in memory (``read_input``: small inputs, tests)."""

    frames: np.ndarray  # (N, H, W, 3) uint8 RGB
    names: tuple[str, ...] | None
    fps: float


@dataclass(frozen=True)
class DenoiseOptions:
    noise: NoiseFamily = NoiseFamily.GAUSSIAN
    sigma: float | None = None  # 0..255; None = blind estimate
    gain: float | None = None  # poisson-gaussian: a of variance a * x + b on [0, 1]; None = estimated
    correlation: Correlation = Correlation.AUTO  # correlated: a camera's noise, denoised on the 2x2 phases
    compression: Compression | None = None  # None: what the input's format says (Compression.UNKNOWN for PNG)
    checkpoint: str = ""  # "": the shipped CPU model (stbn.weights)
    # correlated noise: "" the camera model shipped for the checkpoint's preset, "none" the main
    # model on the 2x2 phases, or a checkpoint
    camera_checkpoint: str = ""
    lookahead: int | None = None  # None = offline (whole clip, bidirectional, in chunks)
    backend: Backend = Backend.AUTO  # for streaming
    chunk: int = 16
    adapt_steps: int = 0
    adapt_seconds: float | None = None
    adapt_lr: float = 2e-3
    adapt_objective: Objective | None = None  # None: stbn.adapt.choose_objective
    save_adapted: Path | None = None
    force: bool = False
    threads: int = 0
    compare: Path | None = None  # also write a before/after page of a few frames here

    def __post_init__(self) -> None:
        if self.sigma is not None and not 0.0 <= self.sigma <= 255.0:
            raise ValueError(f"--sigma must be in 0..255, got {self.sigma}")
        if self.gain is not None and (self.noise is not NoiseFamily.POISSON_GAUSSIAN or not 0.0 <= self.gain < 1.0):
            raise ValueError(f"--gain (0..1) goes with --noise poisson-gaussian, got {self.gain} ({self.noise.value})")
        if self.noise is NoiseFamily.POISSON_GAUSSIAN and (self.sigma is None) != (self.gain is None):
            raise ValueError("--noise poisson-gaussian: give both --gain and --sigma, or neither (estimated)")
        if self.adapt_steps < 0:
            raise ValueError(f"--adapt must be >= 0, got {self.adapt_steps}")
        if self.threads < 0:
            raise ValueError(f"--threads must be >= 0 (0: the library default), got {self.threads}")


# --- input ------------------------------------------------------------------------------------------


def open_input(path: Path, head: int = HEAD_FRAMES) -> VideoInput:
    """Open a video file or a frame folder and decode its first ``head`` frames (errors show now)."""
    if not path.exists():
        raise InputNotFound(f"{path} does not exist")
    if path.is_dir():
        names, rest, fps, count = _folder_frames(path)
    else:
        names, rest, fps, count = None, *_video_frames(path)
    first = list(itertools.islice(rest, head))
    if not first:
        raise EmptyInput(f"{path} has no video frames")
    return VideoInput(np.stack(first), rest, names, fps, count, input_compression(path))


def read_input(path: Path) -> Clip:
    video = open_input(path)
    return Clip(np.stack(list(video.frames())), video.names, video.fps)


def _folder_frames(path: Path) -> tuple[tuple[str, ...], Iterator[np.ndarray], float, int]:
    files = image_files(path)
    if not files:
        raise EmptyInput(f"{path} holds no image frames ({', '.join(IMAGE_SUFFIXES)})")

    def frames() -> Iterator[np.ndarray]:
        import cv2

        shape = None
        for file in files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise UndecodableInput(f"cannot decode the image {file}")
            if shape is not None and image.shape != shape:
                raise MixedFrameSizes(
                    f"{file.name} is {image.shape[1]}x{image.shape[0]}, {files[0].name} is "
                    f"{shape[1]}x{shape[0]}: all frames of a folder must have one size"
                )
            shape = image.shape
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    return tuple(f.name for f in files), frames(), 30.0, len(files)


def _video_frames(path: Path) -> tuple[Iterator[np.ndarray], float, int | None]:
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise UndecodableInput(f"cannot decode {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise UndecodableInput(f"{path} has no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate) if stream.average_rate else 30.0

    declared = int(stream.frames) or None

    def frames() -> Iterator[np.ndarray]:
        decoded = 0
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
                decoded += 1
        except av.error.FFmpegError as exc:
            if not decoded:
                raise UndecodableInput(f"cannot decode {path}: {exc}") from exc
            # a truncated recording (a camera cut off, a copy interrupted): keep what decodes, as the
            # live file source does, and say so
            of = f" of the {declared} its container declares" if declared else ""
            print(f"stbn denoise: warning: {path} is truncated or damaged after {decoded} frames{of} ({exc}); "
                  "denoising the frames that decode", file=sys.stderr)  # fmt: skip
        finally:
            container.close()

    return frames(), fps, declared


# --- output -----------------------------------------------------------------------------------------


class _Output:
    """Frames to a video file or a PNG folder, under a .partial name until ``commit``."""

    def __init__(self, path: Path, clip: VideoInput, force: bool) -> None:
        self.path = path
        self.is_video = path.suffix.lower() in WRITABLE_VIDEO_SUFFIXES
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise UnwritableOutput(
                f"{path}: give a video file ({', '.join(WRITABLE_VIDEO_SUFFIXES)}) or a folder for PNG frames"
            )
        if path.exists() and not (path.is_dir() and not any(path.iterdir())) and not force:
            raise OutputExists(f"{path} exists (use --force to replace it)")
        self.partial = path.with_name(f"{path.stem}.partial{path.suffix}" if self.is_video else f"{path.name}.partial")
        self.names = None if clip.names is None else [str(Path(n).with_suffix(".png")) for n in clip.names]
        self.count = 0
        self._writer: Any = None
        self.fps = clip.fps
        try:
            self._remove_partial()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.is_video:
                self.partial.touch()  # fail now, not after minutes of denoising
            else:
                self.partial.mkdir()
        except OSError as exc:
            raise UnwritableOutput(f"cannot write {path}: {exc}") from exc

    def write(self, image: np.ndarray) -> None:
        try:
            if self.is_video:
                if self._writer is None:
                    from pipeline.sinks import VideoWriter

                    self._writer = VideoWriter(self.partial, self.fps)
                self._writer.write(image)
            else:
                import cv2

                name = self.names[self.count] if self.names is not None else f"frame_{self.count + 1:06d}.png"
                if not cv2.imwrite(str(self.partial / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"cv2.imwrite refused {self.partial / name}")
        except OSError as exc:
            raise UnwritableOutput(f"cannot write {self.path}: {exc}") from exc
        self.count += 1

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.path.exists():
            shutil.rmtree(self.path) if self.path.is_dir() else self.path.unlink()
        self.partial.replace(self.path)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the partial file is removed anyway
                self._writer.close()
        self._remove_partial()

    def _remove_partial(self) -> None:
        if self.partial.is_dir():
            shutil.rmtree(self.partial)
        elif self.partial.exists():
            self.partial.unlink()


# --- the run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiseSummary:
    frames: int
    width: int
    height: int
    seconds: float
    noise: NoiseFamily
    sigma: float
    gain: float
    correlated: bool
    camera_model: bool  # correlated noise denoised by the camera model (else on the 2x2 phases)
    sigma_estimated: bool
    mode: str
    adapt: dict[str, Any] | None
    output: Path
    compare: Path | None = None

    def line(self) -> str:
        fps = self.frames / max(self.seconds, 1e-9)
        noise = f"sigma {self.sigma:.2f}"
        if self.noise is NoiseFamily.POISSON_GAUSSIAN and not self.correlated:
            noise = f"poisson-gaussian gain {self.gain:.4f} {noise}"
        if self.correlated:
            noise = f"correlated (camera) noise, {noise}, " + ("camera model" if self.camera_model else "2x2 phases")
        adapt = ""
        if self.adapt is not None and "skipped" in self.adapt:
            adapt = "; adaptation skipped (correlated noise)"
        elif self.adapt is not None:
            a = self.adapt
            adapt = f"; adapted {a['steps']} steps ({a['objective']}) in {a['seconds']} s, kept {a['kept']}"
        return (
            f"denoised {self.frames} frames {self.width}x{self.height} in {self.seconds:.1f} s ({fps:.1f} frames/s), "
            f"{noise} ({'estimated' if self.sigma_estimated else 'given'}), {self.mode}{adapt} "
            f"-> {self.output}" + (f"; before/after page {self.compare}" if self.compare else "")
        )


def denoise_file(
    input_path: Path,
    output_path: Path,
    options: DenoiseOptions,
    progress: Callable[[Stage, int | None], Any] | None = None,
    checkpoint: Any = None,
) -> DenoiseSummary:
    """Denoise ``input_path`` into ``output_path``; ``progress(stage, total)`` returns a tqdm-like bar.
    ``checkpoint`` (a :class:`stbn.checkpoint.LoadedCheckpoint`, never changed here) replaces
    ``options.checkpoint`` where a worker denoises many files with one model."""
    import torch

    from stbn.checkpoint import save_checkpoint

    if options.threads:
        torch.set_num_threads(options.threads)
    if output_path.resolve() == input_path.resolve():
        raise OutputExists(f"{output_path} is the input itself: choose another output (--force never overwrites it)")
    clip = open_input(input_path)
    output = _Output(output_path, clip, options.force)
    try:
        loaded = checkpoint or load_options_checkpoint(options)
        camera = load_camera_checkpoint(options, loaded.preset)
        model = loaded.model.eval()
        estimated = options.sigma is None
        compression = options.compression or clip.compression
        noise = _noise_model(clip.head, options, compression, camera is not None)
        if noise.correlated and camera is not None:
            model = camera.model.eval()
        start = time.time()
        adapt_summary = None
        if (options.adapt_steps or options.adapt_seconds) and noise.correlated:
            adapt_summary = {"skipped": CORRELATED_NOISE_SKIP}
            print(f"stbn denoise: {CORRELATED_NOISE_SKIP}; denoising with the checkpoint as it is"
                  + ("; --save-adapted not written" if options.save_adapted else ""), file=sys.stderr)  # fmt: skip
        elif options.adapt_steps or options.adapt_seconds:
            model, adapt_summary = _adapt(model, loaded.metadata, clip, noise, options, progress)
            if options.save_adapted is not None:
                metadata = dict(loaded.metadata) | {"adapted_on": str(input_path), "adaptation": adapt_summary}
                save_checkpoint(options.save_adapted, model, loaded.preset, noise=loaded.noise, metadata=metadata)
        bar = progress(Stage.DENOISE, clip.count) if progress else None
        picker = ComparePicker(pick_frames(clip.count)) if options.compare is not None else None
        frames = picker.tap_input(clip.frames()) if picker is not None else clip.frames()
        tiled = noise.correlated and camera is None
        for index, image in enumerate(_denoised(model, frames, clip.head.shape[1:3], noise, tiled, options)):
            if noise.correlated and camera is not None:  # the camera model's output
                image = finish_camera_frame(image, noise.level255, compression)
            output.write(image)
            if picker is not None:
                picker.output(index, image)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        output.commit()
    except BaseException:
        output.abort()
        raise
    mode = "offline (bidirectional)" if options.lookahead is None else f"streaming L={options.lookahead}"
    h, w = clip.head.shape[1:3]
    summary = DenoiseSummary(
        output.count, w, h, time.time() - start, options.noise, noise.sigma255, noise.a,
        noise.correlated, noise.correlated and camera is not None, estimated, mode, adapt_summary, output_path,
    )  # fmt: skip
    if picker is None:
        return summary
    try:
        title = f"{input_path.name}: noisy | denoised"
        page = write_compare_page(options.compare, picker.pairs(), title, summary.line())
    except (OSError, ValueError) as exc:
        written = f"the denoised output {output_path} is written"
        raise UnwritableOutput(f"--compare {options.compare}: {exc} ({written})") from exc
    return dataclasses.replace(summary, compare=page)


def load_options_checkpoint(options: DenoiseOptions) -> Any:
    """The checkpoint ``options`` names (default: the shipped weights), or BadCheckpoint."""
    import stbn
    from stbn.checkpoint import CheckpointError

    try:
        return stbn.load_checkpoint(resolve_checkpoint(options.checkpoint))
    except (CheckpointError, OSError) as exc:  # WeightsNotFound is an OSError
        raise BadCheckpoint(f"{options.checkpoint or 'the shipped weights'}: {exc}") from exc


def load_camera_checkpoint(options: DenoiseOptions, preset: str) -> Any:
    """The camera model for correlated noise (``options.camera_checkpoint``), None where there is
    none, or BadCheckpoint."""
    import stbn
    from stbn.checkpoint import CheckpointError
    from stbn.weights import resolve_camera_checkpoint

    try:
        path = resolve_camera_checkpoint(options.camera_checkpoint, preset)
        return None if path is None else stbn.load_checkpoint(path)
    except (CheckpointError, OSError) as exc:
        raise BadCheckpoint(f"camera model {options.camera_checkpoint or 'shipped'}: {exc}") from exc


def _noise_model(
    head: np.ndarray, options: DenoiseOptions, compression: Compression, camera_model: bool
) -> FrameNoise:
    """Variance gain * x + (sigma / 255)^2, white or correlated: given or estimated on the first
    frames; ``camera_model``: correlated noise gets the level a camera model is trained with."""
    from stbn.noise_estimation import NoiseConfig, NoiseMode, clip_noise

    if options.sigma is not None:
        config = NoiseConfig(NoiseMode.FIXED, options.sigma, options.gain or 0.0, correlation=options.correlation)
    else:
        mode = NoiseMode.estimating(options.noise)
        config = NoiseConfig(mode, correlation=options.correlation, compression=compression)
    return clip_noise(head, config, camera_model)


def _adapt(
    model: Any,
    metadata: dict[str, Any],
    clip: VideoInput,
    frame_noise: FrameNoise,
    options: DenoiseOptions,
    progress: Any,
) -> tuple[Any, dict[str, Any]]:
    from stbn.adapt import AdaptConfig, adapt, choose_objective, trained_loss
    from stbn.stabilize import VarianceStabilizer

    steps = options.adapt_steps if options.adapt_steps else 10**9  # --adapt-time alone: the clock ends it
    # the first HEAD_FRAMES frames (a memory bound) as the model will see them: stabilised where the
    # noise has a gain, through the streaming loop's 8-bit tables when streaming
    noise = VarianceStabilizer(frame_noise.a, frame_noise.b)
    frames = noise.model_input(clip.head, streamed=options.lookahead is not None)
    objective = options.adapt_objective or choose_objective(
        clip.head, stabilised=options.noise is NoiseFamily.POISSON_GAUSSIAN
    )
    config = AdaptConfig(steps=steps, seconds=options.adapt_seconds, lr=options.adapt_lr, objective=objective)
    loss, mean_l2 = trained_loss(metadata)
    bar = progress(Stage.ADAPT, options.adapt_steps or None) if progress else None
    tick = (lambda *_: bar.update(1)) if bar else None
    result = adapt(model, frames, noise.level255, config, loss, mean_l2, progress=tick)
    if bar is not None:
        bar.close()
    return result.model, result.summary() | {"objective": objective.value}


def _denoised(
    model: Any,
    frames: Iterator[np.ndarray],
    size: tuple[int, int],
    noise: FrameNoise,
    tiled: bool,
    options: DenoiseOptions,
) -> Iterator[np.ndarray]:
    """The denoised ``frames`` (all of one ``size`` (H, W)), in order; ``tiled``: on the 2x2 phases."""
    if options.lookahead is None:
        from stbn.offline import denoise_frames

        yield from denoise_frames(model, frames, noise.sigma255, chunk=options.chunk, gain=noise.a, correlated=tiled)
        return
    from engines import EngineConfig, create_engine
    from stbn.noise_estimation import NoiseConfig, NoiseMode
    from stbn.streaming import StreamingDenoiser

    config = EngineConfig(backend=options.backend, threads=options.threads)
    with create_engine(config, model=model) as engine:
        engine.build(*size)
        layout = Correlation.CORRELATED if tiled else Correlation.WHITE
        fixed = NoiseConfig(NoiseMode.FIXED, noise.sigma255, noise.a, correlation=layout)
        denoiser = StreamingDenoiser(engine, options.lookahead, fixed)
        for ready in denoiser.stream(frames):
            yield ready.image


def options_from_args(args: Any) -> DenoiseOptions:
    return DenoiseOptions(
        noise=NoiseFamily(args.noise),
        correlation=Correlation(args.correlation),
        compression=None if args.compression == "auto" else Compression(args.compression),
        sigma=args.sigma,
        gain=args.gain,
        checkpoint=args.checkpoint,
        camera_checkpoint=args.camera_checkpoint,
        lookahead=args.lookahead,
        backend=Backend(args.backend),
        chunk=args.chunk,
        adapt_steps=args.adapt,
        adapt_seconds=args.adapt_time,
        adapt_lr=args.adapt_lr,
        adapt_objective=None if args.adapt_objective == "auto" else Objective(args.adapt_objective),
        save_adapted=Path(args.save_adapted) if args.save_adapted else None,
        force=args.force,
        threads=args.threads,
        compare=args.compare,
    )
