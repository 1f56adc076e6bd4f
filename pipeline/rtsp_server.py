"""RTSP serving with GstRtspServer: re-serve denoised streams, and a small test server.

    python -m pipeline.rtsp_server --port 8554 --mount /test --width 320 --height 180 --fps 30
    python -m pipeline.rtsp_server --port 8554 --mount /test --pattern videotestsrc

The first serves the synthetic source (moving scene + noise + drawn timestamp, for glass-to-glass
measurements) through appsrc; the second a videotestsrc. It prints ``READY <port>`` when listening.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any

import numpy as np

from pipeline.config import RtspOutConfig, SourceConfig
from pipeline.frame import FrameRecord
from pipeline.gst import GStreamerUnavailable, load_gstreamer


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
            self._mounted[stream] = (h, w)
        if self._mounted[stream] == (h, w):
            self.server.push(mount, record.image)

    def stop(self) -> None:
        self.server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.rtsp_server", description="test RTSP server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mount", default="/test")
    parser.add_argument("--pattern", choices=["synthetic", "videotestsrc"], default="synthetic")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument(
        "--noise", type=float, default=25.0, help="synthetic: AWGN sigma 0..255 (a denoiser's test input is noisy)"
    )
    args = parser.parse_args(argv)
    if args.width < 16 or args.height < 16 or args.width % 2 or args.height % 2:
        parser.error(f"--width and --height must be even and >= 16 (H.264), got {args.width}x{args.height}")
    if args.fps <= 0 or not 0 <= args.noise <= 255 or not 0 <= args.port <= 65535:
        parser.error("--fps must be > 0, --noise in 0..255 and --port in 0..65535")
    if not args.mount.startswith("/"):
        parser.error(f"--mount must start with '/', got {args.mount!r}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = RtspServer(args.host, args.port)
        if args.pattern == "videotestsrc":
            server.add_launch(
                args.mount,
                f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={args.width},height={args.height},"
                f"framerate={round(args.fps)}/1 ! videoconvert ! video/x-raw,format=I420 ! {h264_chain(args.fps)}",
            )
        else:
            server.add_appsrc(args.mount, args.width, args.height, args.fps)
        server.start()
    except RtspServerError as exc:
        print(f"rtsp_server: {exc}", file=sys.stderr)
        return 1
    print(f"READY {server.port}", flush=True)
    try:
        if args.pattern == "synthetic":
            from pipeline.sources import SyntheticSource

            src = SyntheticSource(SourceConfig(id="test", width=args.width, height=args.height, fps=args.fps,
                                               noise_sigma=args.noise, pace=True, timestamp=True))
            src.open()
            while not stop.is_set():
                got = src.read()
                if got is None:
                    break
                server.push(args.mount, got[0])
        else:
            while not stop.is_set():
                time.sleep(0.1)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
