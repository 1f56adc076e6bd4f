"""A synthetic moving scene with AWGN and the capture time drawn as a bar code (tests, demos, latency)."""

from __future__ import annotations

import time

import numpy as np

from pipeline import timecode
from pipeline.config import SourceConfig
from pipeline.sources.base import Frame, Source, SourceError


def synthetic_scene(index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """A deterministic clean frame: a smooth gradient with moving shapes (uint8 RGB)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index / 30.0
    r = 96 + 64 * np.sin(xx / max(width, 1) * 3.1 + t)
    g = 96 + 64 * np.cos(yy / max(height, 1) * 2.7 - 0.5 * t)
    b = np.full_like(xx, 128.0 + 40 * ((seed % 5) - 2) / 2)
    img = np.stack([r, g, b], axis=-1)
    cx = (0.2 + 0.6 * (0.5 + 0.5 * np.sin(t * 1.3))) * width
    cy = (0.3 + 0.4 * (0.5 + 0.5 * np.cos(t * 0.9))) * height
    rad = max(3.0, min(width, height) / 6)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < rad**2] = (230, 200, 40)
    x0 = int((index * max(1, width // 60)) % max(1, width))
    bw, bh = max(2, width // 8), max(2, height // 4)
    y0 = height - bh - max(1, height // 10)
    img[y0 : y0 + bh, x0 : x0 + bw] = (30, 60, 200)
    img[y0 : y0 + bh, : max(0, x0 + bw - width)] = (30, 60, 200)
    return np.clip(img, 0, 255).astype(np.uint8)


class SyntheticSource(Source):
    """A generated moving scene with AWGN and, optionally, the capture time drawn as a bar code."""

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        if config.width < 32 or config.height < 16:
            raise SourceError(f"synthetic source {config.id!r}: width/height must be at least 32x16")
        self._index = 0
        self._start = 0.0
        self._rng = np.random.default_rng(config.seed)

    def open(self) -> None:
        self._start = time.monotonic()
        self._index = 0
        self._rng = np.random.default_rng(self.config.seed)

    def read(self) -> Frame | None:
        c = self.config
        i = self._index
        if c.frames and i >= c.frames:
            return None
        image = synthetic_scene(i, c.width, c.height, c.seed)
        if c.noise_sigma > 0:
            noisy = image.astype(np.float32) + self._rng.normal(0.0, c.noise_sigma, image.shape).astype(np.float32)
            image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        if c.pace:
            delay = self._start + i / c.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if c.timestamp:
            timecode.draw(image, time.time_ns() // 1_000_000)
        self._index += 1
        return image, i / c.fps
