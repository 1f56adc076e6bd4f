"""Subscriber client library and CLI for the pipeline's ZeroMQ stream.

    python -m pipeline.subscribe --endpoint tcp://127.0.0.1:5556 --stats
    python -m pipeline.subscribe --endpoint tcp://127.0.0.1:5556 --record out/sub.mp4 --count 100
    python -m pipeline.subscribe --endpoint tcp://127.0.0.1:5556 --view
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq
import zmq.auth

from pipeline.profiling import summarize
from pipeline.wire import ReceivedFrame, WireFormatError, decode


class SubscribeError(RuntimeError):
    """Bad subscriber settings."""


class Subscriber:
    """Iterate frames from a pipeline publisher: ``for f in Subscriber(endpoint): f.image, f.age_ms``."""

    def __init__(
        self, endpoint: str, topics: tuple[str, ...] = ("",), rcvhwm: int = 4,
        curve_server_public_file: str | None = None, curve_client_secret_file: str | None = None,
    ) -> None:
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, rcvhwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        if curve_server_public_file:
            if not curve_client_secret_file:
                raise SubscribeError("CURVE needs both the server public key and a client secret key file")
            server_public, _ = zmq.auth.load_certificate(curve_server_public_file)
            public, secret = zmq.auth.load_certificate(curve_client_secret_file)
            self._socket.curve_serverkey = server_public
            self._socket.curve_publickey = public
            self._socket.curve_secretkey = secret
        for topic in topics:
            self._socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._socket.connect(endpoint)

    def recv(self, timeout: float | None = None) -> ReceivedFrame | None:
        """The next frame, or None after ``timeout`` seconds."""
        if timeout is not None and not self._socket.poll(int(timeout * 1000), zmq.POLLIN):
            return None
        parts = self._socket.recv_multipart(copy=False)
        return decode(parts, time.time_ns())

    def __iter__(self) -> Iterator[ReceivedFrame]:
        while True:
            frame = self.recv()
            if frame is not None:
                yield frame

    def close(self) -> None:
        self._socket.close(0)
        self._context.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def percentiles(values: list[float]) -> dict[str, float]:
    """The report's percentile summary (pipeline.profiling.summarize) of a list of ms."""
    return summarize(np.asarray(values, np.float64))


def _rate(frames: list[ReceivedFrame]) -> float | None:
    """Frames/s from the pts of the first frames of one stream (None until two have come)."""
    if len(frames) < 2:
        return None
    step = float(frames[-1].header["pts"]) - float(frames[-2].header["pts"])
    return 1.0 / step if step > 0 else 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.subscribe", description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5556")
    parser.add_argument("--topic", action="append", default=None, help="stream topic (repeatable; default all)")
    parser.add_argument("--record", metavar="FILE", help="write the frames to a video file")
    parser.add_argument("--fps", type=float, help="frame rate written by --record (default: from the frames' pts)")
    parser.add_argument("--stats", action="store_true", help="print latency statistics")
    parser.add_argument("--timecode", action="store_true", help="also read the drawn timestamp (glass-to-glass)")
    parser.add_argument("--view", action="store_true", help="show the frames in a window (needs a display)")
    parser.add_argument("--count", type=int, default=0, help="stop after N frames")
    parser.add_argument("--duration", type=float, default=0.0, help="stop after S seconds")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="stop when no frame came for S seconds")
    parser.add_argument("--rcvhwm", type=int, default=4)
    parser.add_argument("--max-age-ms", type=float, default=0.0,
                        help="skip (and count) frames older than this on arrival: a live viewer that fell behind")
    parser.add_argument("--slow-ms", type=float, default=0.0,
                        help="sleep after each frame (a slow consumer, for tests)")
    parser.add_argument("--json", metavar="FILE", help="write per-frame rows and the statistics as JSON")
    parser.add_argument("--curve-server-public", metavar="FILE")
    parser.add_argument("--curve-client-secret", metavar="FILE")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    writer = None
    rows: list[dict[str, Any]] = []
    stale = 0
    ages: list[float] = []
    g2g: list[float] = []
    try:
        if args.record and not Path(args.record).resolve().parent.is_dir():
            raise SubscribeError(f"--record: the folder of {args.record} does not exist")
        if args.view:
            import os

            if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
                raise SubscribeError("--view needs a display (DISPLAY is not set)")
        sub = Subscriber(args.endpoint, tuple(args.topic or [""]), args.rcvhwm,
                         args.curve_server_public, args.curve_client_secret)
    except (SubscribeError, zmq.ZMQError, OSError, ValueError) as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    last = time.monotonic()
    waiting_said = False
    pending_record: list[ReceivedFrame] = []  # --record without --fps: the first frames fix the rate
    try:
        while not stop.is_set():
            if args.count and len(rows) >= args.count:
                break
            if args.duration and time.monotonic() - start > args.duration:
                break
            if args.idle_timeout and time.monotonic() - last > args.idle_timeout:
                break
            frame = sub.recv(timeout=0.1)
            if frame is None:
                if not rows and not waiting_said and time.monotonic() - start > 5.0:
                    hint = "is the pipeline running?"
                    print(f"subscribe: no frame from {args.endpoint} in 5 s ({hint})", file=sys.stderr)
                    waiting_said = True
                continue
            last = time.monotonic()
            if args.max_age_ms and frame.age_ms > args.max_age_ms:
                stale += 1
                continue
            row = {"stream": frame.stream, "seq": frame.seq, "age_ms": round(frame.age_ms, 3)}
            ages.append(frame.age_ms)
            if args.timecode:
                t = frame.timecode_age_ms()
                row["glass_to_glass_ms"] = t
                if t is not None:
                    g2g.append(t)
            rows.append(row)
            if args.record:
                if writer is None:
                    pending_record.append(frame)
                    fps = args.fps or _rate(pending_record)
                    if fps is None:
                        continue
                    from pipeline.sinks import VideoWriter

                    writer = VideoWriter(args.record, fps)
                    for held in pending_record:
                        writer.write(held.image)
                    pending_record.clear()
                else:
                    writer.write(frame.image)
            if args.view:
                cv2.imshow(frame.topic or "stbn", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF == ord("q"):
                    break
            if args.slow_ms:
                time.sleep(args.slow_ms / 1e3)
            if args.stats and len(rows) % 30 == 0:
                print(json.dumps({"frames": len(rows), "age_ms": percentiles(ages[-300:])}), flush=True)
    except (SubscribeError, WireFormatError) as exc:
        print(f"subscribe: bad message: {exc}", file=sys.stderr)
        return 1
    finally:
        sub.close()
        if writer is None and pending_record:  # a single frame came: no rate to read, write it at 30
            from pipeline.sinks import VideoWriter

            writer = VideoWriter(args.record, args.fps or 30.0)
            for held in pending_record:
                writer.write(held.image)
        if writer is not None:
            writer.close()
    summary: dict[str, Any] = {"frames": len(rows), "stale_skipped": stale, "age_ms": percentiles(ages)}
    if args.timecode:
        summary["glass_to_glass_ms"] = percentiles(g2g)
        summary["timecode_unreadable"] = sum(1 for r in rows if r.get("glass_to_glass_ms") is None)
    seqs: dict[str, list[int]] = {}
    for r in rows:
        seqs.setdefault(r["stream"], []).append(r["seq"])
    summary["in_order"] = all(all(b > a for a, b in zip(s, s[1:], strict=False)) for s in seqs.values())
    if args.stats or args.timecode:
        print(json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "frames": rows}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
