"""Online adaptation: a background stage that keeps training a copy of a stream's model on the
stream's own recent frames and hands improved weights to its engine between two frames.

The inference stage calls ``observe(image)`` after each frame (an append to a bounded history of
references to the frames, which the frame records never change) and ``between_frames()``, where
prepared weights are swapped in. Training and the engine's preparation (an ONNX re-export for
ONNX Runtime) run on this stage's thread, never on the inference thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from engines import Engine, EngineError
from pipeline.config import OnlineAdaptConfig
from pipeline.stages import Stage, StreamState
from stbn.adapt import CORRELATED_NOISE_SKIP, AdaptConfig, adapt, trained_loss
from stbn.noise_estimation import NoiseConfig, clip_noise
from stbn.stabilize import VarianceStabilizer

log = logging.getLogger("pipeline.adapt")


class OnlineAdapter(Stage):
    # Not a daemon: a thread still inside torch (a backward pass, an export) when the interpreter
    # finalises aborts the whole process ("terminate called without an active exception", exit 134;
    # pytorch/pytorch#38228), after the report was written. Its rounds stop at the next step once
    # stopped, and the exit waits for that.
    daemon = False

    def __init__(
        self,
        stream: str,
        engine: Engine,
        config: OnlineAdaptConfig,
        noise: NoiseConfig,
        state: StreamState,
        metadata: dict[str, Any],
    ) -> None:
        super().__init__(f"adapt-{stream}")
        self.engine = engine
        self.config = config
        self.noise = noise
        self.state = state
        self.loss, self.mean_l2 = trained_loss(metadata)
        self._history: deque[np.ndarray] = deque(maxlen=config.history_frames)
        self._lock = threading.Lock()
        self._prepared: Any = None
        self._pending_outcome: dict[str, Any] | None = None
        self._applied = threading.Event()
        self._applied.set()
        self._skip_told = False  # correlated noise: the skip is logged once, counted every round

    # -- called by the inference thread ---------------------------------------------------------
    def observe(self, image: np.ndarray) -> None:
        with self._lock:
            self._history.append(image)

    def between_frames(self) -> None:
        """Swap in prepared weights (fast: a reference assignment in every backend)."""
        with self._lock:
            prepared, outcome = self._prepared, self._pending_outcome
            self._prepared, self._pending_outcome = None, None
        if prepared is None:
            return
        self.engine.swap_weights(prepared)
        self.state.record_adaptation(outcome | {"outcome": "swapped"})
        log.info(
            "stream %s: adapted weights swapped in (held-back loss %.4f -> %.4f, %d steps in %.1f s)",
            self.state.stream, outcome["loss_before"], outcome["loss_after"], outcome["steps"], outcome["seconds"],
        )  # fmt: skip
        self._applied.set()

    # -- the stage ---------------------------------------------------------------------------------
    def run(self) -> None:
        last = time.monotonic()
        while not self.stop_event.wait(0.2):
            if time.monotonic() - last < self.config.every_s or not self._applied.is_set():
                continue
            with self._lock:
                history = list(self._history)
            if len(history) < self.config.history_frames:
                continue
            last = time.monotonic()
            self._round(np.stack(history))

    def _round(self, frames: np.ndarray) -> None:
        c = self.config
        # the history's noise as the streaming loop treats it (stabilised where it has a gain)
        frame_noise = clip_noise(frames, self.noise)
        if frame_noise.correlated:
            if not self._skip_told:
                log.warning("stream %s: %s", self.state.stream, CORRELATED_NOISE_SKIP)
                self._skip_told = True
            self.state.record_adaptation({"outcome": "skipped_correlated", "reason": CORRELATED_NOISE_SKIP})
            return
        noise = VarianceStabilizer(frame_noise.a, frame_noise.b, clipped=self.noise.clipped)
        sigma = noise.level255
        inputs = noise.model_input(frames, streamed=True)
        settings = AdaptConfig(
            steps=c.steps, lr=c.lr, frames=c.frames, crop=c.crop, batch_size=c.batch_size,
            objective=c.objective,
            cosine_decay=False,  # each round is short and starts from swapped-in weights (bench/adapt_live.py)
        )  # fmt: skip
        result = adapt(
            self.engine.model, inputs, sigma, settings, self.loss, self.mean_l2,
            cancelled=self.stop_event.is_set,
        )  # fmt: skip
        if self.stop_event.is_set():
            return
        outcome = {
            "steps": result.steps,
            "seconds": round(result.seconds, 2),
            "sigma": round(sigma, 2),
            "loss_before": result.holdout_loss_before,
            "loss_after": result.holdout_loss_after,
        }
        if not result.kept_adapted:
            self.state.record_adaptation(outcome | {"outcome": "rolled_back"})
            log.info(
                "stream %s: adaptation rolled back (held-back loss %.4f -> %.4f did not fall)",
                self.state.stream, result.holdout_loss_before, result.holdout_loss_after,
            )  # fmt: skip
            return
        try:
            prepared = self.engine.prepare_weights(result.model.state_dict())
        except EngineError as exc:
            log.warning("stream %s: adaptation stops: %s", self.state.stream, exc)
            self.state.record_adaptation(outcome | {"outcome": "unsupported", "error": str(exc)})
            self.stop_event.set()
            return
        with self._lock:
            self._prepared, self._pending_outcome = prepared, outcome
            self._applied.clear()

    def on_error(self, exc: BaseException) -> None:
        # adaptation is an extra: its failure is logged and counted, the stream goes on unchanged
        log.warning("stream %s: online adaptation failed: %s", self.state.stream, exc, exc_info=exc)
        self.state.record_adaptation({"outcome": "failed", "error": f"{exc.__class__.__name__}: {exc}"})

    def shutdown(self) -> None:
        with self._lock:
            self._prepared, self._pending_outcome = None, None
            self._history.clear()
