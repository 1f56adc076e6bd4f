"""FFmpeg through PyAV: files and image sequences, and RTSP as a fallback to GStreamer."""

from __future__ import annotations

import time
from typing import Any

from pipeline.config import SourceConfig
from pipeline.sources.base import Frame, Source, SourceDisconnected, SourceError, check_path, log


class PyAVFileSource(Source):
    """Anything FFmpeg (PyAV) decodes: files, image sequences (``frames/%03d.png``)."""

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self._container: Any = None
        self._frames: Any = None
        self._start = 0.0
        self._first_pts: float | None = None
        self._offset = 0.0  # pts added after each loop
        self._last_pts = 0.0
        self._period = 1.0 / config.fps
        self._declared = 0  # frames the container says it holds (0: unknown)
        self._decoded = 0

    def _open_container(self) -> None:
        import av

        path = self.config.uri
        check_path(path, self.description)
        try:
            self._container = av.open(path)
        except av.error.FileNotFoundError:
            raise SourceError(f"{self.description}: no such file {path!r}") from None
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise SourceError(f"{self.description}: {path!r} is not a video file ({exc})") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{self.description}: {path!r} has no video stream")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        if stream.average_rate:
            self._period = 1.0 / float(stream.average_rate)
        self._declared = int(stream.frames or 0)
        self._decoded = 0
        self._frames = self._container.decode(stream)

    def open(self) -> None:
        self._open_container()
        self._start = time.monotonic()
        self._first_pts = None
        self._offset = 0.0

    def _next(self) -> Any:
        import av

        try:
            frame = next(self._frames)
        except StopIteration:
            self._check_complete()
            return None
        except av.error.FFmpegError as exc:
            if self._first_pts is None:
                raise SourceError(f"{self.description}: {self.config.uri!r} is not a decodable video ({exc})") from None
            raise SourceError(f"{self.description}: decoding failed ({exc})") from None
        self._decoded += 1
        return frame

    def _check_complete(self) -> None:
        """A file that ends before the frame count its container declares is truncated: say so."""
        if self._declared and self._decoded < self._declared:
            message = (
                f"{self.description}: {self.config.uri!r} ended after {self._decoded} of the "
                f"{self._declared} frames its container declares (truncated or damaged file)"
            )
            if message not in self.warnings:
                log.warning("%s", message)
                self.warnings.append(message)

    def read(self) -> Frame | None:
        frame = self._next()
        if frame is None and self.config.loop and self._first_pts is not None:
            self._container.close()
            self._open_container()
            self._offset = self._last_pts + self._period - (self._first_pts or 0.0)
            frame = self._next()
        if frame is None:
            return None
        pts = frame.time if frame.time is not None else self._last_pts + self._period
        pts += self._offset
        if self._first_pts is None:
            self._first_pts = pts
        self._last_pts = pts
        if self.config.pace:
            delay = self._start + (pts - self._first_pts) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        return frame.to_ndarray(format="rgb24"), pts

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class PyAVStreamSource(Source):
    """RTSP through PyAV (FFmpeg), slice threading for low latency; a fallback to GStreamer."""

    def __init__(self, config: SourceConfig) -> None:
        super().__init__(config)
        self._container: Any = None
        self._frames: Any = None

    def open(self) -> None:
        import av

        c = self.config
        try:
            self._container = av.open(
                c.uri,
                options={"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"},
                timeout=(c.open_timeout_s, c.read_timeout_s),
            )
        except av.error.FFmpegError as exc:
            raise SourceDisconnected(f"{self.description}: could not open {c.uri!r} ({exc})") from None
        stream = self._container.streams.video[0]
        stream.thread_type = "SLICE"
        self._frames = self._container.decode(stream)

    def read(self) -> Frame | None:
        import av

        try:
            frame = next(self._frames)
        except StopIteration:
            raise SourceDisconnected(f"{self.description}: stream ended") from None
        except av.error.FFmpegError as exc:
            raise SourceDisconnected(f"{self.description}: {exc}") from None
        return frame.to_ndarray(format="rgb24"), frame.time

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
