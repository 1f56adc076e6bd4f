"""RTSP serving with GstRtspServer: re-serve the denoised streams (``outputs.rtsp``); the test server
built on it is ``scripts/rtsp_test_server.py``."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from pipeline.config import RtspOutConfig
from pipeline.frame import FrameRecord
from pipeline.gst import GStreamerUnavailable, load_gstreamer

log = logging.getLogger("pipeline.rtsp")


class RtspServerError(RuntimeError):
    """GStreamer / GstRtspServer missing, or the server cannot listen."""


def _gst() -> tuple[Any, Any, Any]:
    try:
        return load_gstreamer("GstRtspServer", "GLib")
    except GStreamerUnavailable as exc:
        raise RtspServerError(f"GstRtspServer is not available: {exc}") from None


def h264_chain(fps: float, bitrate_kbps: int = 2000) -> str:
    key = max(1, round(fps))
    return (
        f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} key-int-max={key} "
        "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1"
    )


class RtspServer:
    """A GstRtspServer on ``host:port`` (0 = a free port) with its own GLib main loop thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._gst, self._rtsp, self._glib = _gst()
        self._context = self._glib.MainContext.new()
        self._loop = self._glib.MainLoop.new(self._context, False)
        self.server = self._rtsp.RTSPServer.new()
        self.server.set_address(host)
        self.server.set_service(str(port))
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._source_id: int | None = None
        self._appsrcs: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._caps: dict[str, str] = {}
        self._pts: dict[str, int] = {}

    def add_launch(self, mount: str, launch: str, shared: bool = True) -> None:
        factory = self._rtsp.RTSPMediaFactory.new()
        factory.set_launch(f"( {launch} )")
        factory.set_shared(shared)
        self.server.get_mount_points().add_factory(mount, factory)

    def add_appsrc(self, mount: str, width: int, height: int, fps: float, bitrate_kbps: int = 2000) -> None:
        """A mount fed by :meth:`push` (RGB frames of this size)."""
        num = round(fps * 1000)
        caps = f"video/x-raw,format=RGB,width={width},height={height},framerate={num}/1000"
        self._caps[mount] = caps
        self._appsrcs[mount] = []
        launch = (
            f"appsrc name=src is-live=true format=time do-timestamp=true caps={caps} "
            f"! queue max-size-buffers=2 leaky=downstream ! videoconvert ! video/x-raw,format=I420 "
            f"! {h264_chain(fps, bitrate_kbps)}"
        )
        factory = self._rtsp.RTSPMediaFactory.new()
        factory.set_launch(f"( {launch} )")
        factory.set_shared(True)
        factory.connect("media-configure", self._on_media_configure, mount)
        self.server.get_mount_points().add_factory(mount, factory)

    def remount_appsrc(self, mount: str, width: int, height: int, fps: float, bitrate_kbps: int = 2000) -> None:
        """Replace ``mount`` with one for frames of a new size: its clients get end-of-stream (and
        reconnect), new clients get the new size."""
        with self._lock:
            old = self._appsrcs.pop(mount, [])
        for appsrc in old:
            appsrc.emit("end-of-stream")
        self.server.get_mount_points().remove_factory(mount)
        self.add_appsrc(mount, width, height, fps, bitrate_kbps)

    def _on_media_configure(self, _factory: Any, media: Any, mount: str) -> None:
        appsrc = media.get_element().get_child_by_name("src")
        with self._lock:
            self._appsrcs[mount].append(appsrc)
        media.connect("unprepared", self._on_unprepared, mount, appsrc)

    def _on_unprepared(self, _media: Any, mount: str, appsrc: Any) -> None:
        with self._lock:
            if appsrc in self._appsrcs.get(mount, []):
                self._appsrcs[mount].remove(appsrc)

    def push(self, mount: str, image: np.ndarray) -> int:
        """Send one frame to the clients of ``mount``; returns how many media took it."""
        with self._lock:
            targets = list(self._appsrcs.get(mount, ()))
        if not targets:
            return 0
        data = np.ascontiguousarray(image).tobytes()
        for appsrc in targets:
            appsrc.emit("push-buffer", self._gst.Buffer.new_wrapped(data))
        return len(targets)

    def start(self) -> None:
        self._source_id = self.server.attach(self._context)
        if not self._source_id:
            raise RtspServerError(f"cannot listen on {self.host}:{self.port}")
        self.port = self.server.get_bound_port()
        self._thread = threading.Thread(target=self._run, name="rtsp-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._context.push_thread_default()
        try:
            self._loop.run()
        finally:
            self._context.pop_thread_default()

    def url(self, mount: str) -> str:
        return f"rtsp://{self.host}:{self.port}{mount}"

    def stop(self) -> None:
        if self._source_id:
            source = self._context.find_source_by_id(self._source_id)
            if source is not None:
                source.destroy()
            self._source_id = None
        self._loop.quit()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _StreamSink:
    def __init__(self, owner: RtspSink, stream: str) -> None:
        self.owner = owner
        self.stream = stream

    def write(self, record: FrameRecord) -> None:
        self.owner.write(self.stream, record)

    def close(self) -> None:
        pass


class RtspSink:
    """Re-serves each stream's denoised frames at ``rtsp://host:port/<stream id>``."""

    def __init__(self, config: RtspOutConfig, fps: dict[str, float]) -> None:
        self.config = config
        self.fps = fps
        self.server = RtspServer(config.host, config.port)
        self._mounted: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        self.server.start()

    def sink(self, stream: str) -> _StreamSink:
        return _StreamSink(self, stream)

    def write(self, stream: str, record: FrameRecord) -> None:
        h, w = record.image.shape[:2]
        mount = f"/{stream}"
        if stream not in self._mounted:
            self.server.add_appsrc(mount, w, h, self.fps.get(stream, 30.0), self.config.bitrate_kbps)
        elif self._mounted[stream] != (h, w):  # a reconnect brought another size: a new mount
            old_h, old_w = self._mounted[stream]
            log.warning(
                "stream %s: frame size changed from %dx%d to %dx%d: restarting its RTSP mount %s (clients get "
                "end-of-stream and reconnect)", stream, old_w, old_h, w, h, self.server.url(mount),
            )  # fmt: skip
            self.server.remount_appsrc(mount, w, h, self.fps.get(stream, 30.0), self.config.bitrate_kbps)
        self._mounted[stream] = (h, w)
        self.server.push(mount, record.image)

    def stop(self) -> None:
        self.server.stop()
