"""Capture sources: synthetic (with a drawn timestamp), file, USB/V4L2 camera, RTSP and any
GStreamer pipeline ending in appsink.

A source is opened, read frame by frame and closed by the :class:`~pipeline.stages.CaptureStage`,
which owns reconnection. ``read`` returns ``(image, pts)`` with image (H, W, 3) uint8 RGB, or None
at the end of a finite stream. A :class:`SourceError` is fatal (bad path, not a video, unknown
host); a :class:`SourceDisconnected` may be retried with back-off.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cv2
import numpy as np

from pipeline import timecode
from pipeline.config import SourceConfig

log = logging.getLogger("pipeline.sources")

Frame = tuple[np.ndarray, "float | None"]


class SourceError(RuntimeError):
    """A source that cannot work as configured; retrying will not help."""


class SourceDisconnected(SourceError):
    """A source that failed to open in time or lost its connection; worth retrying."""


class Source(abc.ABC):
    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.description = f"{config.kind} source {config.id!r}"
        self.warnings: list[str] = []  # what the source noticed and reports at its end (a truncated file)
        if config.kind in ("rtsp", "camera"):
            self.description += f" ({config.uri})"

    @abc.abstractmethod
    def open(self) -> None:
        """Connect / open; raises SourceError or SourceDisconnected (within ``open_timeout_s``)."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """Next frame, None at the end of a finite stream; raises SourceDisconnected on loss."""

    def close(self) -> None:
        """Release the source (idempotent)."""

    def interrupt(self) -> None:
        """Wake a blocking ``read`` so that a stop request is seen quickly (best effort)."""


# -- synthetic -----------------------------------------------------------------------------------


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


# -- files ---------------------------------------------------------------------------------------


def _check_path(path: str, what: str) -> None:
    if "%" not in path and not Path(path).exists():
        raise SourceError(f"{what}: no such file {path!r}")


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
        _check_path(path, self.description)
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
        elif c.kind == "file":
            _check_path(c.uri, self.description)
            cap = cv2.VideoCapture(c.uri, cv2.CAP_FFMPEG)
        else:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(c.open_timeout_s * 1000),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(c.read_timeout_s * 1000)]
            cap = cv2.VideoCapture(c.uri, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            if c.kind == "file":
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
            if self.config.kind == "file":
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
        if self.config.kind == "file" and self.config.pace:
            delay = self._start + pts - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self._count += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), pts

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# -- network / GStreamer ---------------------------------------------------------------------------


def check_host(url: str, what: str) -> None:
    """Fail fast (SourceError) on a URL whose host does not resolve."""
    parsed = urlparse(url)
    if parsed.scheme not in ("rtsp", "rtsps", "rtspt", "http", "https"):
        raise SourceError(f"{what}: {url!r} is not an rtsp:// URL")
    if not parsed.hostname:
        raise SourceError(f"{what}: {url!r} has no host")
    try:
        socket.getaddrinfo(parsed.hostname, parsed.port or 554)
    except socket.gaierror as exc:
        raise SourceError(f"{what}: unknown host {parsed.hostname!r} ({exc.strerror})") from None


def rtsp_launch(url: str) -> str:
    """The low-latency GStreamer decode pipeline for an H.264 RTSP stream."""
    return (
        f'rtspsrc location="{url}" latency=0 protocols=tcp ! rtph264depay ! h264parse ! avdec_h264 ! '
        "videoconvert ! video/x-raw,format=RGB ! appsink name=sink max-buffers=1 drop=true sync=false"
    )


def _preload_freetype() -> None:
    """Load matplotlib's bundled FreeType before GStreamer's plugins load the system one: importing
    matplotlib after rtspsrc has run segfaults (seen with GStreamer 1.22 + matplotlib wheels)."""
    with contextlib.suppress(ImportError):
        import matplotlib.ft2font  # noqa: F401


def _gst() -> Any:
    _preload_freetype()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst
    except (ImportError, ValueError) as exc:
        raise SourceError(f"GStreamer (PyGObject) is not available: {exc}") from None
    Gst.init(None)
    return Gst


class GStreamerSource(Source):
    """A GStreamer pipeline ending in an appsink that delivers RGB frames."""

    def __init__(self, config: SourceConfig, launch: str | None = None) -> None:
        super().__init__(config)
        self.launch = launch or config.uri
        if "appsink" not in self.launch:
            raise SourceError(f"{self.description}: a GStreamer source pipeline must end in appsink")
        self._gst = _gst()
        self._pipeline: Any = None
        self._sink: Any = None
        self._first: Any = None
        self._lock = threading.Lock()

    def _bus_error(self) -> str | None:
        gst = self._gst
        bus = self._pipeline.get_bus()
        while True:
            msg = bus.pop_filtered(gst.MessageType.ERROR | gst.MessageType.EOS)
            if msg is None:
                return None
            if msg.type == gst.MessageType.ERROR:
                err, _debug = msg.parse_error()
                if "Could not open resource" in err.message:  # GStreamer's words for a refused connection
                    return f"cannot connect (refused, or nothing listens at {self.config.uri}): {err.message}"
                return f"{err.message}"
            return "end of stream"

    def open(self) -> None:
        gst = self._gst
        from gi.repository import GLib

        try:
            self._pipeline = gst.parse_launch(self.launch)
        except GLib.Error as exc:
            raise SourceError(f"{self.description}: bad GStreamer pipeline: {exc.message}") from None
        sink = self._pipeline.get_by_name("sink") if hasattr(self._pipeline, "get_by_name") else None
        if sink is None:
            it = self._pipeline.iterate_sinks()
            while True:
                res, elem = it.next()
                if res != gst.IteratorResult.OK:
                    break
                if elem.get_factory() and elem.get_factory().get_name() == "appsink":
                    sink = elem
                    break
        if sink is None:
            self._pipeline = None
            raise SourceError(f"{self.description}: the GStreamer pipeline has no appsink")
        self._sink = sink
        self._pipeline.set_state(gst.State.PLAYING)
        deadline = time.monotonic() + self.config.open_timeout_s
        while time.monotonic() < deadline:
            sample = sink.emit("try-pull-sample", 50 * gst.MSECOND)
            if sample is not None:
                self._first = sample
                return
            error = self._bus_error()
            if error:
                self.close()
                raise SourceDisconnected(f"{self.description}: {error}")
        self.close()
        raise SourceDisconnected(f"{self.description}: no frame within {self.config.open_timeout_s:g} s")

    def read(self) -> Frame | None:
        gst = self._gst
        sample, self._first = self._first, None
        deadline = time.monotonic() + self.config.read_timeout_s
        while sample is None:
            with self._lock:
                if self._pipeline is None:
                    return None
                sample = self._sink.emit("try-pull-sample", 50 * gst.MSECOND)
                if sample is not None:
                    break
                error = self._bus_error()
                if error == "end of stream" and self.config.kind == "gstreamer":
                    return None
            if error:
                raise SourceDisconnected(f"{self.description}: {error}")
            if time.monotonic() > deadline:
                raise SourceDisconnected(f"{self.description}: no frame for {self.config.read_timeout_s:g} s")
        return self._to_array(sample)

    def _to_array(self, sample: Any) -> Frame:
        gst = self._gst
        s = sample.get_caps().get_structure(0)
        fmt = s.get_value("format")
        if fmt != "RGB":
            raise SourceError(f"{self.description}: the appsink must receive video/x-raw,format=RGB, got {fmt}")
        w, h = s.get_value("width"), s.get_value("height")
        buf = sample.get_buffer()
        ok, info = buf.map(gst.MapFlags.READ)
        if not ok:
            raise SourceDisconnected(f"{self.description}: could not map a buffer")
        try:
            data = np.frombuffer(info.data, np.uint8)
            stride = data.size // h
            image = data[: stride * h].reshape(h, stride)[:, : w * 3].reshape(h, w, 3).copy()
        finally:
            buf.unmap(info)
        pts = buf.pts / 1e9 if buf.pts != gst.CLOCK_TIME_NONE else None
        return image, pts

    def close(self) -> None:
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.set_state(self._gst.State.NULL)
                self._pipeline = None
                self._sink = None


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
                c.uri, options={"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay"},
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


def make_source(config: SourceConfig) -> Source:
    """The source for a config (backend ``auto``: GStreamer for RTSP, PyAV for files)."""
    kind, backend = config.kind, config.backend
    if kind == "synthetic":
        return SyntheticSource(config)
    if kind == "file":
        return OpenCVSource(config) if backend == "opencv" else PyAVFileSource(config)
    if kind == "camera":
        return OpenCVSource(config, camera=True)
    if kind == "gstreamer":
        return GStreamerSource(config)
    # rtsp
    check_host(config.uri, f"rtsp source {config.id!r}")
    if backend == "pyav":
        return PyAVStreamSource(config)
    if backend == "opencv":
        return OpenCVSource(config)
    return GStreamerSource(config, rtsp_launch(config.uri))
