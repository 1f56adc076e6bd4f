"""The frame record that travels through the pipeline."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The points in time a frame passes, in order. Times are wall-clock nanoseconds
# (``time.time_ns``) so that a subscriber in another process can compute a frame's age.
STAGES = ("captured", "queued", "infer_start", "infer_end", "published")


def now_ns() -> int:
    return time.time_ns()


@dataclass(frozen=True)
class FrameRecord:
    """One frame of one stream: identity, source timing and the time it left each stage.

    ``epoch`` counts (re)connections of the source: a new epoch means the stream restarted and
    the streaming state must be reset. ``stamps`` is a tuple of ``(stage, time_ns)`` pairs.
    """

    stream: str
    seq: int
    pts: float | None  # source presentation time in seconds, None when the source has none
    capture_ns: int
    image: np.ndarray = field(repr=False, compare=False)
    epoch: int = 0
    sigma: float | None = None
    stamps: tuple[tuple[str, int], ...] = ()
    # after inference: the input frame ``image`` was denoised from (a reference, not a copy), so a
    # side-by-side view shows the same frame twice
    noisy: np.ndarray | None = field(default=None, repr=False, compare=False)

    def stamped(self, stage: str, t_ns: int | None = None) -> FrameRecord:
        """A copy with ``stage`` stamped (now, unless ``t_ns`` is given)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return dataclasses.replace(self, stamps=(*self.stamps, (stage, now_ns() if t_ns is None else t_ns)))

    def denoised_as(self, image: np.ndarray, sigma: float | None = None) -> FrameRecord:
        """This frame after inference: ``image`` denoised at ``sigma``, the input kept as ``noisy``."""
        return dataclasses.replace(self, image=image, sigma=sigma, noisy=self.image)

    def times(self) -> dict[str, int]:
        return dict(self.stamps)

    def header(self, **extra: Any) -> dict[str, Any]:
        """The JSON-able description of this frame (without the pixels)."""
        return {
            "stream": self.stream,
            "seq": self.seq,
            "epoch": self.epoch,
            "pts": self.pts,
            "capture_ns": self.capture_ns,
            "sigma": self.sigma,
            "t": self.times(),
            **extra,
        }
