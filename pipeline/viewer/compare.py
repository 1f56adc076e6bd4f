"""A self-contained before/after page for a denoised file (``stbn denoise ... --compare page.html``):
a few frames spread over the clip, each as a split view with a slider (noisy left of it, denoised
right), the images embedded, so the page opens anywhere without the files or a server."""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

FRAMES = 6  # frames shown, spread over the clip
EVERY_WITHOUT_COUNT = 30  # where the length is not known in advance: every this many frames
MAX_WIDTH = 1280  # wider frames are scaled down on the page (the images stay exact below this)
JPEG_QUALITY = 92


def pick_frames(count: int | None, frames: int = FRAMES) -> tuple[int, ...]:
    """Indices of the frames to show: ``frames`` spread evenly over ``count`` (first and last
    included), or every EVERY_WITHOUT_COUNT-th frame while the length is unknown."""
    if count is None:
        return tuple(range(0, frames * EVERY_WITHOUT_COUNT, EVERY_WITHOUT_COUNT))
    if count < 1:
        return ()
    return tuple(sorted({round(x) for x in np.linspace(0, count - 1, min(frames, count))}))


@dataclass
class ComparePicker:
    """Keeps the picked frames of the input and of the output as they stream past."""

    indices: tuple[int, ...]
    noisy: dict[int, np.ndarray] = field(default_factory=dict)
    denoised: dict[int, np.ndarray] = field(default_factory=dict)

    def tap_input(self, frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for i, frame in enumerate(frames):
            if i in self.indices:
                self.noisy[i] = frame.copy()
            yield frame

    def output(self, index: int, image: np.ndarray) -> None:
        if index in self.indices:
            self.denoised[index] = image.copy()

    def pairs(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        return [(i, self.noisy[i], self.denoised[i]) for i in self.indices if i in self.noisy and i in self.denoised]


def _data_url(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    if w > MAX_WIDTH:
        image = cv2.resize(image, (MAX_WIDTH, round(h * MAX_WIDTH / w)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def write_compare_page(path: Path, pairs: list[tuple[int, np.ndarray, np.ndarray]], title: str, summary: str) -> Path:
    """Write the page (atomically: a partial page never has the final name); returns ``path``."""
    if not pairs:
        raise ValueError("no frames to compare")
    frames = [{"index": i, "noisy": _data_url(a), "denoised": _data_url(b)} for i, a, b in pairs]
    template = resources.files("pipeline.viewer").joinpath("compare.html").read_text(encoding="utf-8")
    page = (
        template.replace("{{TITLE}}", html.escape(title))
        .replace("{{SUMMARY}}", html.escape(summary))
        .replace("{{FRAMES}}", json.dumps(frames).replace("</", "<\\/"))
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, path)
    return path
