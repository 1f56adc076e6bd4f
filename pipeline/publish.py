"""ZeroMQ publisher and the wire format.

A message is three frames: ``[topic, header, payload]``. ``topic`` is the stream's topic (ZeroMQ
prefix filtering), ``header`` a small versioned JSON object, ``payload`` the frame bytes
(``raw``: H*W*3 RGB uint8, row-major; ``jpeg``: a JPEG file). Payloads are sent zero-copy.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from pipeline import wire
from pipeline.config import CurveConfig, PublishConfig
from pipeline.frame import FrameRecord, now_ns


class PublishError(RuntimeError):
    """The publisher cannot bind or is misconfigured."""


def setup_curve_server(socket: zmq.Socket, context: zmq.Context, curve: CurveConfig) -> Any:
    """Make ``socket`` a CURVE server; with ``clients_dir`` only those public keys may connect.

    Returns the ZAP authenticator thread (to stop on close) or None.
    """
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    try:
        public, secret = zmq.auth.load_certificate(curve.server_secret_file)
    except (OSError, ValueError) as exc:
        raise PublishError(
            f"publish.curve.server_secret_file: cannot load {curve.server_secret_file!r}: {exc}"
        ) from None
    if secret is None:
        raise PublishError(f"publish.curve.server_secret_file: {curve.server_secret_file!r} holds no secret key")
    auth = ThreadAuthenticator(context)
    auth.start()
    if curve.clients_dir:
        if not Path(curve.clients_dir).is_dir():
            auth.stop()
            raise PublishError(f"publish.curve.clients_dir: no such directory {curve.clients_dir!r}")
        auth.configure_curve(domain="*", location=curve.clients_dir)
    else:
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return auth


class SendOutcome(enum.Enum):
    SENT = "sent"
    STALE = "stale"  # older than publish.max_age_ms when its turn came: counted, not sent
    ABANDONED = "abandoned"  # lossless, given up on at shutdown: counted, not sent


class ZmqPublisher:
    """An XPUB socket: small HWM for live viewers (drops), or ``lossless`` (XPUB_NODROP: waits)."""

    def __init__(self, config: PublishConfig) -> None:
        self.config = config
        self._context = zmq.Context()
        self._socket: zmq.Socket | None = None
        self._auth: Any = None
        self._stop = threading.Event()
        self.subscriptions = 0
        self.sent = 0
        self.abandoned = 0  # lossless frames given up on at shutdown (interrupt): counted, not sent
        self.stale_dropped = 0  # older than max_age_ms when their turn came: counted, not sent
        self.bytes = 0
        self.blocked_s = 0.0
        self.waiting_on_subscriber = False  # lossless: a subscriber's queue is full and send is waiting
        self.endpoint = config.endpoint

    def open(self) -> None:
        c = self.config
        sock = self._context.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, c.sndhwm)
        # lossless: close() waits up to the drain timeout for queued frames to reach a slow subscriber
        sock.setsockopt(zmq.LINGER, int(c.drain_timeout_s * 1000) if c.lossless else 0)
        if c.lossless:
            sock.setsockopt(zmq.XPUB_NODROP, 1)
        if c.curve is not None:
            self._auth = setup_curve_server(sock, self._context, c.curve)
        try:
            sock.bind(c.endpoint)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise PublishError(f"publish.endpoint: cannot bind {c.endpoint!r}: {exc}") from None
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._socket = sock

    def _poll_subscriptions(self) -> None:
        if self._socket is None:
            return
        while True:
            try:
                msg = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions += 1
            elif msg[:1] == b"\x00":
                self.subscriptions -= 1

    def wait_for_subscribers(self, count: int, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block until ``count`` subscriptions arrived (recorders in lossless mode)."""
        deadline = time.monotonic() + timeout
        while self.subscriptions < count:
            if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                return False
            if self._socket is not None and self._socket.poll(50, zmq.POLLIN):
                self._poll_subscriptions()
        return True

    def interrupt(self) -> None:
        """Stop waiting on slow subscribers in lossless mode (shutdown)."""
        self._stop.set()

    def send(self, topic: str, record: FrameRecord, **header: Any) -> SendOutcome:
        """Encode and send one record as it is (the publish stage has stamped it ``published``);
        ``header`` adds fields to its header (the stream's ``lookahead``)."""
        if self._socket is None:
            raise PublishError("publisher is not open")
        self._poll_subscriptions()
        if self.config.max_age_ms and (now_ns() - record.capture_ns) / 1e6 > self.config.max_age_ms:
            self.stale_dropped += 1
            return SendOutcome.STALE
        try:
            parts = wire.encode(
                topic, record, self.config.encoding, self.config.jpeg_quality, **header
            )
        except wire.WireFormatError as exc:
            raise PublishError(str(exc)) from exc
        flags = zmq.NOBLOCK if self.config.lossless else 0
        t0 = time.perf_counter()
        while True:
            try:
                self._socket.send_multipart(parts, flags=flags, copy=False)
                break
            except zmq.Again:  # lossless and a subscriber is at its HWM: wait for it
                self.waiting_on_subscriber = True
                if self._stop.is_set():
                    self.abandoned += 1
                    self.blocked_s += time.perf_counter() - t0
                    self.waiting_on_subscriber = False
                    return SendOutcome.ABANDONED
                self._socket.poll(5, zmq.POLLOUT)
        self.waiting_on_subscriber = False
        self.blocked_s += time.perf_counter() - t0
        self.sent += 1
        self.bytes += int(parts[-1].nbytes)
        return SendOutcome.SENT

    def close(self) -> None:
        if self._socket is not None:
            # after an interrupt nothing more is waited for; else the socket's linger applies
            self._socket.close(linger=0 if self._stop.is_set() else None)
            self._socket = None
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._context.term()
        if self.config.endpoint.startswith("ipc://"):
            path = self.config.endpoint[len("ipc://"):]
            if path and not path.startswith("@") and os.path.exists(path):
                os.unlink(path)

    def stats(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "sent": self.sent, "abandoned": self.abandoned,
                "stale_dropped": self.stale_dropped, "max_age_ms": self.config.max_age_ms, "bytes": self.bytes,
                "blocked_s": round(self.blocked_s, 3), "subscriptions": self.subscriptions,
                "lossless": self.config.lossless, "encoding": self.config.encoding.value, "sndhwm": self.config.sndhwm}
