"""Subscriber client library and CLI for the pipeline's ZeroMQ stream.

    stbn subscribe --endpoint tcp://127.0.0.1:5556 --stats
    stbn subscribe --endpoint tcp://127.0.0.1:5556 --record out/sub.mp4 --count 100
    stbn subscribe --endpoint tcp://127.0.0.1:5556 --view

(``python -m pipeline.subscribe`` is the same.)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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


def configure_parser(parser: argparse.ArgumentParser) -> None:
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
    parser.set_defaults(func=run)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``stbn subscribe``."""
    parser = subparsers.add_parser("subscribe", help="receive the denoised frames a run publishes (record, view, "
                                   "latency statistics)", description=__doc__.splitlines()[0])  # fmt: skip
    configure_parser(parser)
    return parser


def _open(args: argparse.Namespace) -> Subscriber:
    """The subscriber the arguments ask for, after checking what --record and --view need."""
    if args.record and not Path(args.record).resolve().parent.is_dir():
        raise SubscribeError(f"--record: the folder of {args.record} does not exist")
    if args.view:
        import os

        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise SubscribeError("--view needs a display (DISPLAY is not set)")
    return Subscriber(args.endpoint, tuple(args.topic or [""]), args.rcvhwm,
                      args.curve_server_public, args.curve_client_secret)  # fmt: skip


class _Recorder:
    """--record: a video file at --fps, or at the rate the first frames' pts give (held until then)."""

    def __init__(self, path: str, fps: float | None) -> None:
        self.path, self.fps = path, fps
        self._writer: Any = None
        self._held: list[ReceivedFrame] = []

    def write(self, frame: ReceivedFrame) -> None:
        if self._writer is not None:
            self._writer.write(frame.image)
            return
        self._held.append(frame)
        fps = self.fps or _rate(self._held)
        if fps is not None:
            self._open(fps)

    def _open(self, fps: float) -> None:
        from pipeline.sinks import VideoWriter

        self._writer = VideoWriter(self.path, fps)
        for held in self._held:
            self._writer.write(held.image)
        self._held.clear()

    def close(self) -> None:
        if self._writer is None and self._held:  # a single frame came: no rate to read, write it at 30
            self._open(self.fps or 30.0)
        if self._writer is not None:
            self._writer.close()


@dataclass
class _Tally:
    """What the received frames add up to: one row per frame, the ages, the glass-to-glass times."""

    timecode: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    stale: int = 0
    ages: list[float] = field(default_factory=list)
    g2g: list[float] = field(default_factory=list)

    def add(self, frame: ReceivedFrame) -> None:
        row = {"stream": frame.stream, "seq": frame.seq, "age_ms": round(frame.age_ms, 3)}
        self.ages.append(frame.age_ms)
        if self.timecode:
            t = frame.timecode_age_ms()
            row["glass_to_glass_ms"] = t
            if t is not None:
                self.g2g.append(t)
        self.rows.append(row)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"frames": len(self.rows), "stale_skipped": self.stale}
        summary["age_ms"] = percentiles(self.ages)
        if self.timecode:
            summary["glass_to_glass_ms"] = percentiles(self.g2g)
            summary["timecode_unreadable"] = sum(1 for r in self.rows if r.get("glass_to_glass_ms") is None)
        seqs: dict[str, list[int]] = {}
        for r in self.rows:
            seqs.setdefault(r["stream"], []).append(r["seq"])
        summary["in_order"] = all(all(b > a for a, b in zip(s, s[1:], strict=False)) for s in seqs.values())
        return summary


def _receive(sub: Subscriber, args: argparse.Namespace, tally: _Tally, recorder: _Recorder | None,
             stop: threading.Event) -> None:  # fmt: skip
    """Take frames until --count, --duration, --idle-timeout, q in the window or a signal."""
    start = last = time.monotonic()
    waiting_said = False
    while not stop.is_set():
        if args.count and len(tally.rows) >= args.count:
            return
        if args.duration and time.monotonic() - start > args.duration:
            return
        if args.idle_timeout and time.monotonic() - last > args.idle_timeout:
            return
        frame = sub.recv(timeout=0.1)
        if frame is None:
            if not tally.rows and not waiting_said and time.monotonic() - start > 5.0:
                print(f"subscribe: no frame from {args.endpoint} in 5 s (is the pipeline running?)", file=sys.stderr)
                waiting_said = True
            continue
        last = time.monotonic()
        if args.max_age_ms and frame.age_ms > args.max_age_ms:
            tally.stale += 1
            continue
        tally.add(frame)
        if recorder is not None:
            recorder.write(frame)
        if args.view:
            cv2.imshow(frame.topic or "stbn", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
            if cv2.waitKey(1) & 0xFF == ord("q"):
                return
        if args.slow_ms:
            time.sleep(args.slow_ms / 1e3)
        if args.stats and len(tally.rows) % 30 == 0:
            print(json.dumps({"frames": len(tally.rows), "age_ms": percentiles(tally.ages[-300:])}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.subscribe", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    # Ctrl-C and SIGTERM end the receiving loop cleanly; the caller's handlers come back after it
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        sub = _open(args)
    except (SubscribeError, zmq.ZMQError, OSError, ValueError) as exc:
        print(f"subscribe: {exc}", file=sys.stderr)
        return 2
    tally = _Tally(args.timecode)
    recorder = _Recorder(args.record, args.fps) if args.record else None
    try:
        _receive(sub, args, tally, recorder, stop)
    except (SubscribeError, WireFormatError) as exc:
        print(f"subscribe: bad message: {exc}", file=sys.stderr)
        return 1
    finally:
        sub.close()
        if recorder is not None:
            recorder.close()
    summary = tally.summary()
    if args.stats or args.timecode:
        print(json.dumps(summary), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary, "frames": tally.rows}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
