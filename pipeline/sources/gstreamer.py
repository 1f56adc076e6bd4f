"""Any GStreamer pipeline ending in an appsink, and the low-latency RTSP pipeline built on it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any
from urllib.parse import urlparse

import numpy as np

from pipeline.config import SourceConfig, SourceKind
from pipeline.gst import GStreamerUnavailable, load_gstreamer
from pipeline.sources.base import Frame, Source, SourceDisconnected, SourceError


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


def _gst() -> Any:
    try:
        (gst,) = load_gstreamer()
    except GStreamerUnavailable as exc:
        raise SourceError(str(exc)) from None
    return gst


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
                if error == "end of stream" and self.config.kind is SourceKind.GSTREAMER:
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
