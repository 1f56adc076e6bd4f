"""Sinks for denoised frames: a video file (PyAV) and, in rtsp_server, an RTSP re-serve."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.frame import FrameRecord

log = logging.getLogger("pipeline.sinks")


class Sink(Protocol):
    """Where the publish stage hands each published record of a stream (after ZeroMQ)."""

    def write(self, record: FrameRecord) -> None: ...
    def close(self) -> None: ...


class VideoWriter:
    """Write (H, W, 3) uint8 RGB frames to a video file with PyAV (H.264 by default)."""

    def __init__(self, path: str | Path, fps: float = 30.0, codec: str = "libx264") -> None:
        self.path = Path(path)
        self.fps = fps
        self.codec = codec
        self._container: Any = None
        self._stream: Any = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        import av

        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2  # yuv420p needs even sizes
        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), "w")
            self._stream = self._container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
            if self.codec == "libx264":
                self._stream.options = {"preset": "veryfast", "tune": "zerolatency"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None


class VideoFileSink:
    """The pipeline sink: one stream's denoised frames into a file; a new frame size (a reconnect
    that brought another resolution) starts a new segment, ``<name>-2.mp4``, ..., logged."""

    def __init__(self, path: str | Path, fps: float, codec: str = "libx264") -> None:
        self.writer = VideoWriter(path, fps, codec)
        self.segments = [self.writer.path]
        self._size: tuple[int, int] | None = None

    @property
    def path(self) -> Path:
        return self.writer.path

    def write(self, record: FrameRecord) -> None:
        size = record.image.shape[:2]
        if self._size is not None and size != self._size:
            first = self.segments[0]
            path = first.with_name(f"{first.stem}-{len(self.segments) + 1}{first.suffix}")
            log.warning(
                "stream %s: frame size changed from %dx%d to %dx%d: %s is closed after %d frames, a new "
                "segment starts in %s", record.stream, self._size[1], self._size[0], size[1], size[0],
                self.writer.path, self.writer.frames, path,
            )  # fmt: skip
            self.writer.close()
            self.writer = VideoWriter(path, self.writer.fps, self.writer.codec)
            self.segments.append(path)
        self._size = size
        self.writer.write(record.image)

    def close(self) -> None:
        self.writer.close()
