"""OpenCV's VideoCapture: USB/V4L2 cameras, and files or RTSP through its FFmpeg backend."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2

from pipeline.config import SourceConfig, SourceKind
from pipeline.sources.base import Frame, Source, SourceDisconnected, SourceError, check_path


class OpenCVSource(Source):
    """cv2.VideoCapture: files (fallback backend), cameras by index or path, RTSP (fallback)."""

    def __init__(self, config: SourceConfig, camera: bool = False) -> None:
        super().__init__(config)
        self._camera = camera
        self._cap: Any = None
        self._start = 0.0
        self._count = 0
        self._period = 1.0 / config.fps

    def open(self) -> None:
        c = self.config
        if self._camera:
            target: Any = int(c.uri) if c.uri.strip().isdigit() else (c.uri or 0)
            if isinstance(target, str) and not Path(target).exists():
                raise SourceDisconnected(f"{self.description}: no camera device {target!r}")
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2 if hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY)
        elif c.kind is SourceKind.FILE:
            check_path(c.uri, self.description)
            cap = cv2.VideoCapture(c.uri, cv2.CAP_FFMPEG)
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(c.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(c.read_timeout_s * 1000),
            ]
            cap = cv2.VideoCapture(c.uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            if c.kind is SourceKind.FILE:
                raise SourceError(f"{self.description}: {c.uri!r} is not a video file OpenCV can open")
            raise SourceDisconnected(f"{self.description}: could not open {c.uri or 0!r}")
        if self._camera:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            if c.width and c.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
            cap.set(cv2.CAP_PROP_FPS, c.fps)
        fps = cap.get(cv2.CAP_PROP_FPS)
        if fps and fps > 0:
            self._period = 1.0 / fps
        self._cap = cap
        self._start = time.monotonic()
        self._count = 0

    def read(self) -> Frame | None:
        ok, bgr = self._cap.read()
        if not ok:
            if self.config.kind is SourceKind.FILE:
                if self.config.loop and self._count:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, bgr = self._cap.read()
                if not ok:
                    if not self._count:
                        raise SourceError(f"{self.description}: {self.config.uri!r} has no decodable frame")
                    return None
            else:
                raise SourceDisconnected(f"{self.description}: no frame (device or stream lost)")
        pts = self._count * self._period
        if self.config.kind is SourceKind.FILE and self.config.pace:
            delay = self._start + pts - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._count += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pts

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
