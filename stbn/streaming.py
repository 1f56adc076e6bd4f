"""Causal-window bidirectional propagation over a live stream, on any runner of the step graphs
(``engines``' backends, or :class:`stbn.step.EagerRunner`).

With look-ahead L, frame t-L is emitted when frame t arrives:
- the forward hidden state is carried from one emitted frame to the next;
- the backward branch sweeps t, t-1, ..., t-L from a zero state over the frames in the window;
- flows between consecutive frames are computed once, when the second frame of a pair arrives,
  and kept with the frames of the window;
- ``flush`` emits the last L frames at end of stream; a sequence gap flushes and resets.
Memory holds at most L+1 frames with their flows, whatever the stream length.

Noise: each frame's variance model a*x + b comes from the tracker. AWGN (a = 0) goes to the graphs
as it is and the output loses its clipping bias (stbn.clipping); signal-dependent noise (a > 0) is
stabilised first (stbn.stabilize: the graphs see AWGN of one level, the output is mapped back),
both as 256-entry tables on the 8-bit frames. Spatially correlated noise (a camera's) goes to the
camera model where one is given (a non-blind network trained on camera noise, whole frames, at the
level the tracker measures for it), else to the main model on the frame's four 2x2 phases tiled
into one frame (stbn.phases); a stream whose noise changes between white and correlated is flushed
and restarted on the other model or layout. What the camera model denoised is finished at half
resolution (stbn.finishing: its low band, and its chroma where the source says it is lossy).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stbn.clipping import apply_table, declip_table
from stbn.finishing import finish_camera_frame
from stbn.noise_estimation import FrameNoise, NoiseConfig, NoiseTracker
from stbn.phases import PhaseTiling
from stbn.stabilize import VarianceStabilizer

MAX_LOOKAHEAD = 8
log = logging.getLogger("stbn.streaming")


class StepRunner(Protocol):
    """What the streaming loop needs of a backend: the step graphs of :mod:`stbn.step` by name,
    built for one resolution, with its own array handles."""

    name: str
    resolution: tuple[int, int] | None

    @property
    def bidirectional(self) -> bool: ...
    def build(self, height: int, width: int) -> None: ...
    def run(self, graph: str, *inputs: Any) -> tuple[Any, ...]: ...
    def upload(self, array: np.ndarray) -> Any: ...
    def download(self, handle: Any) -> np.ndarray: ...


class FrameSizeError(ValueError):
    """A frame whose size or layout differs from the stream's."""


@dataclass(frozen=True)
class DenoisedFrame:
    seq: int
    image: np.ndarray  # (H, W, 3) uint8
    sigma: float  # noise level used, 0..255 scale (for Poisson-Gaussian: the level at mid-grey)
    correlated: bool = False  # camera (correlated) noise: by the camera model, else on the 2x2 phases
    tag: Any = None  # what ``push`` was given with the frame (the pipeline's frame record), returned with it


@dataclass
class _Pending:
    seq: int
    x: Any  # (1, 3, H, W) float on the engine (phases tiled where the noise is correlated)
    graph_noise: Any  # (1, 2) variance model the graphs see (stabilised: (0, sigma^2)) on the engine
    noise: FrameNoise  # the frame's own noise model on the host
    flow_to_prev: Any | None  # flow(y_s, y_{s-1}); None for the first frame after a reset
    flow_to_next: Any | None = None  # flow(y_s, y_{s+1}); set when s+1 arrives
    tag: Any = None  # the caller's, handed back with the denoised frame


class StreamingDenoiser:
    """``push(frame, seq)`` -> frames that became ready; ``flush()`` at end of stream.

    ``camera_engine``: the step graphs of a camera model (a non-blind network trained on camera
    noise) for frames whose noise is correlated; None: those go to ``engine`` on the 2x2 phases.
    """

    def __init__(
        self,
        engine: StepRunner,
        lookahead: int = 2,
        noise: NoiseConfig | None = None,
        camera_engine: StepRunner | None = None,
    ) -> None:
        if not 0 <= lookahead <= MAX_LOOKAHEAD:
            raise ValueError(f"lookahead must be in 0..{MAX_LOOKAHEAD}, got {lookahead}")
        self.engine = engine
        self.camera_engine = camera_engine
        self.lookahead = lookahead
        self.noise = NoiseTracker(noise or NoiseConfig(), camera_model=camera_engine is not None)
        self._window: deque[_Pending] = deque()
        self._h_forward: Any | None = None
        self._last: tuple[int, Any] | None = None  # (seq, x) of the newest pushed frame
        self.resets = 0
        self._tables: dict[tuple[float, float], _NoiseTables] = {}  # a few recent noise models
        self._tiling: PhaseTiling | None = None
        self._correlated = False  # the state's noise family: camera model or phases tiled
        self._size: tuple[int, int] | None = None  # (H, W) of the stream's frames

    @property
    def pending(self) -> int:
        """Frames pushed but not yet emitted (at most ``lookahead``)."""
        return len(self._window)

    def reset(self) -> None:
        """Forget all state (pending frames are dropped: call ``flush`` first to keep them)."""
        self._restart()
        self.noise.reset()
        self.resets += 1

    def _restart(self) -> None:
        self._window.clear()
        self._h_forward = None
        self._last = None

    def push(self, frame: np.ndarray, seq: int, tag: Any = None) -> list[DenoisedFrame]:
        """Add frame ``seq`` ((H, W, 3) uint8); returns the frames that became ready, in order,
        each with the ``tag`` it was pushed with (a caller's record of the frame: it need not keep
        its own copy of the window).

        A gap in sequence numbers flushes the window and resets the state first.
        """
        self._check(frame)
        ready: list[DenoisedFrame] = []
        if self._last is not None and seq != self._last[0] + 1:
            ready += self.flush()
            self.reset()
        noise = self.noise.update(frame)
        engine = self._runner(noise)
        if engine.resolution != frame.shape[:2]:
            h, w = frame.shape[:2]
            start = time.perf_counter()
            engine.build(h, w)
            # an export or compile can take seconds: say so, it is no stall of the stream
            log.info("engine %s built for %dx%d in %.1f s", engine.name, w, h, time.perf_counter() - start)
        if self._last is not None and self._correlated != noise.correlated:
            # the hidden state is in the other layout: finish what is pending, start afresh
            turned = "correlated" if noise.correlated else "white"
            log.info("noise turned %s: restarting the stream's propagation", turned)
            ready += self.flush()
            self._restart()
        tables = self._noise_tables(noise)
        if tables.forward is not None:
            frame = apply_table(frame, tables.forward)
        if self._tiled(noise):
            frame = self._phase_tiling(frame).tile(frame)
        (x,) = engine.run("prepare", engine.upload(frame))
        entry = _Pending(seq, x, engine.upload(tables.graph_noise), noise, None, tag=tag)
        self._correlated = noise.correlated
        if self._last is not None:
            if self.lookahead == 0 or not engine.bidirectional:
                # No backward step will read prev->cur: half the flow work.
                (entry.flow_to_prev,) = engine.run("flow_to_prev", self._last[1], x)
            else:
                to_prev, to_next = engine.run("pair_flows", self._last[1], x)
                entry.flow_to_prev = to_prev
                if self._window:
                    self._window[-1].flow_to_next = to_next
        self._window.append(entry)
        self._last = (seq, x)
        self._size = frame.shape[:2]
        while len(self._window) > self.lookahead:
            ready.append(self._emit_oldest())
        return ready

    def stream(self, frames: Iterable[np.ndarray], start: int = 0) -> Iterator[DenoisedFrame]:
        """Every frame of ``frames`` (numbered from ``start``) pushed, then the window flushed: the
        denoised frames in order, one for each frame in (a whole clip, a file, a benchmark)."""
        for seq, frame in enumerate(frames, start):
            yield from self.push(frame, seq)
        yield from self.flush()

    def flush(self) -> list[DenoisedFrame]:
        """Emit every pending frame (end of stream); the forward state is kept."""
        out = []
        while self._window:
            out.append(self._emit_oldest())
        return out

    def _runner(self, noise: FrameNoise) -> StepRunner:
        """The step graphs for a frame of this noise."""
        return self.camera_engine if noise.correlated and self.camera_engine is not None else self.engine

    def _tiled(self, noise: FrameNoise) -> bool:
        """Correlated noise without a camera model is denoised on the 2x2 phases."""
        return noise.correlated and self.camera_engine is None

    def _check(self, frame: np.ndarray) -> None:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
            raise FrameSizeError(f"frames must be (H, W, 3) uint8, got {got}")
        if self._last is not None and self._size != frame.shape[:2]:
            raise FrameSizeError(
                f"frame size changed mid-stream from {self._size} to {frame.shape[:2]}; "
                "reset() the denoiser for a new stream"
            )

    def _emit_oldest(self) -> DenoisedFrame:
        oldest = self._window[0]
        engine = self._runner(oldest.noise)
        run = engine.run
        if self._h_forward is None or oldest.flow_to_prev is None:
            (h_f,) = run("forward_start", oldest.x, oldest.graph_noise)
        else:
            (h_f,) = run("forward", oldest.x, oldest.graph_noise, self._h_forward, oldest.flow_to_prev)
        hidden = [h_f]
        if engine.bidirectional:
            newest = self._window[-1]
            (h_b,) = run("backward_start", newest.x, newest.graph_noise)
            for k in range(len(self._window) - 2, -1, -1):
                entry = self._window[k]
                (h_b,) = run("backward", entry.x, entry.graph_noise, h_b, entry.flow_to_next)
            hidden.append(h_b)
        (image,) = run("fuse", oldest.x, oldest.graph_noise, *hidden)
        self._h_forward = h_f
        self._window.popleft()
        denoised = engine.download(image)
        if self._tiled(oldest.noise):
            denoised = self._phase_tiling(denoised).untile(denoised)
        tables = self._noise_tables(oldest.noise)
        if tables.inverse is not None:
            denoised = apply_table(denoised, tables.inverse)
        if engine is self.camera_engine:
            denoised = finish_camera_frame(denoised, oldest.noise.level255, self.noise.config.compression)
        return DenoisedFrame(oldest.seq, denoised, oldest.noise.level255, oldest.noise.correlated, oldest.tag)

    def _phase_tiling(self, frame: np.ndarray) -> PhaseTiling:
        if self._tiling is None or self._tiling.shape != frame.shape[:2]:
            self._tiling = PhaseTiling(*frame.shape[:2])
        return self._tiling

    def _noise_tables(self, noise: FrameNoise) -> _NoiseTables:
        # the noise model changes every few frames at most, and a window spans few of them
        variance = (noise.a, noise.b)
        if variance not in self._tables:
            if len(self._tables) >= 2 * (MAX_LOOKAHEAD + 1):
                self._tables.pop(next(iter(self._tables)))
            self._tables[variance] = _NoiseTables.build(*variance, clipped=self.noise.config.clipped)
        return self._tables[variance]


@dataclass(frozen=True)
class _NoiseTables:
    forward: np.ndarray | None  # uint8 frame -> stabilised uint8 frame; None: AWGN, as it is
    inverse: np.ndarray | None  # denoised uint8 -> output uint8; None: nothing to undo
    graph_noise: np.ndarray  # (1, 2) float32 (a, b) the graphs are given, made once per noise model

    @staticmethod
    def build(a: float, b: float, clipped: bool) -> _NoiseTables:
        stabilizer = VarianceStabilizer(a, b, clipped=clipped)
        variance = (0.0, stabilizer.sigma**2)
        graph_noise = np.array([variance], np.float32)
        if stabilizer.gaussian:
            return _NoiseTables(None, declip_table(*variance) if clipped else None, graph_noise)
        return _NoiseTables(stabilizer.forward_table(), stabilizer.inverse_table(), graph_noise)
