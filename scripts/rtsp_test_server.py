"""A test RTSP server: the synthetic source (a moving scene with AWGN and the capture time drawn as a
bar code) or GStreamer's videotestsrc, served as H.264 at rtsp://HOST:PORT/MOUNT. Prints
"READY <port>" once it listens; SIGINT/SIGTERM stop it.

    python scripts/rtsp_test_server.py --port 8554 --mount /test --width 320 --height 180 --fps 30
    python scripts/rtsp_test_server.py --port 8554 --mount /test --pattern videotestsrc
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import SourceConfig
from pipeline.rtsp_server import RtspServer, RtspServerError, h264_chain
from pipeline.sources import SyntheticSource


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/rtsp_test_server.py", description="test RTSP server")
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
        print(f"rtsp_test_server: {exc}", file=sys.stderr)
        return 1
    print(f"READY {server.port}", flush=True)
    try:
        if args.pattern == "synthetic":
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
