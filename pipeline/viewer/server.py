"""The live viewer: one page with every stream's noisy input beside its denoised output.

Transport: a WebSocket per browser tab (aiohttp serves the page and the socket). Each preview is one
binary message holding the *same* frame twice (input and output JPEGs, matched by seq before they
leave the pipeline), so the page can never pair an input with another frame's output; stats travel
on the same socket as JSON once a second. Nothing here can slow the pipeline: the publish stage
hands a record to :class:`PreviewSink` (a time check and a reference under a lock), the encoding
happens on the viewer's own thread, and a tab that reads slowly is sent the newest preview when it
is ready for one; whatever is passed over is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import cv2

from pipeline.config import ViewerConfig
from pipeline.frame import FrameRecord
from pipeline.stages import LiveStream

log = logging.getLogger("pipeline.viewer")
STATS_EVERY_S = 1.0
HISTORY = 120  # stats ticks of latency history per stream (a minute)

Snapshot = Callable[[], dict[str, LiveStream]]


class ViewerError(RuntimeError):
    """The viewer cannot start (aiohttp missing, the port taken)."""


@dataclass
class PreviewCounts:
    """Per stream: frames offered to the viewer, previews encoded, and frames passed over."""

    encoded: int = 0
    skipped_rate: int = 0  # inside the max_fps interval of the last preview
    replaced: int = 0  # a newer frame came before the encoder took this one
    no_viewer: int = 0  # nobody was watching

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _StreamHistory:
    published: int = 0
    at: float = 0.0
    fps: float = 0.0
    adaptations: int = 0
    p50: deque[float | None] = field(default_factory=lambda: deque(maxlen=HISTORY))
    swaps: deque[bool] = field(default_factory=lambda: deque(maxlen=HISTORY))


def preview_size(height: int, width: int, max_width: int) -> tuple[int, int]:
    """(height, width) of a preview: the frame's aspect, at most ``max_width`` wide, even sizes."""
    if width <= max_width:
        return height, width
    return max(2, round(height * max_width / width)), max_width


def encode_preview(record: FrameRecord, config: ViewerConfig) -> bytes:
    """One binary message: a 4-byte big-endian header length, the JSON header (stream, seq, sizes of
    the two JPEGs), then the input JPEG and the output JPEG of the same frame."""
    if record.noisy is None:
        raise ValueError("a preview needs the record's input frame (FrameRecord.noisy)")
    h, w = preview_size(*record.image.shape[:2], config.max_width)
    jpegs = []
    for image in (record.noisy, record.image):
        if image.shape[:2] != (h, w):
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for stream {record.stream} frame {record.seq}")
        jpegs.append(buf.tobytes())
    header = json.dumps({
        "stream": record.stream, "seq": record.seq, "epoch": record.epoch, "sigma": record.sigma,
        "width": w, "height": h, "source": [int(record.image.shape[1]), int(record.image.shape[0])],
        "capture_ns": record.capture_ns, "sizes": [len(j) for j in jpegs],
    }).encode()  # fmt: skip
    return struct.pack(">I", len(header)) + header + jpegs[0] + jpegs[1]


class PreviewSink:
    """The publish stage's hand-off to the viewer for one stream (a :class:`pipeline.sinks.Sink`)."""

    def __init__(self, stream: str, viewer: ViewerServer) -> None:
        self.stream = stream
        self._viewer = viewer
        self._next = 0.0

    def write(self, record: FrameRecord) -> None:
        now = time.monotonic()
        counts = self._viewer.counts[self.stream]
        if now < self._next:
            counts.skipped_rate += 1
            return
        self._next = now + 1.0 / self._viewer.config.max_fps
        self._viewer.offer(record)

    def close(self) -> None:
        """The viewer server is the pipeline's to stop; nothing is held here."""


class _Client:
    """One browser tab: the newest unsent preview per stream, and the task that sends them."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.pending: dict[str, bytes] = {}
        self.wake = asyncio.Event()
        self.skipped = 0  # previews replaced before this tab was ready for them


class ViewerServer:
    """Serves ``/`` (the page), ``/ws`` (previews and stats) and ``/api/streams`` (the stats as JSON)
    on ``config.host:config.port`` from its own thread and event loop; encodes on another thread."""

    def __init__(self, config: ViewerConfig, streams: list[str], snapshot: Snapshot) -> None:
        try:
            from aiohttp import web  # noqa: F401
        except ImportError:
            raise ViewerError("the viewer needs aiohttp: pip install 'stbn-stream[viewer]'") from None
        self.config = config
        self.streams = list(streams)
        self._snapshot = snapshot
        self.counts = {s: PreviewCounts() for s in streams}
        self._history = {s: _StreamHistory() for s in streams}
        self._pending: dict[str, FrameRecord] = {}
        self._lock = threading.Lock()  # _pending, counts' replaced / no_viewer
        self._frame_ready = threading.Event()
        self._stopping = threading.Event()
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.port: int | None = None
        self._server_thread = threading.Thread(target=self._serve, name="viewer", daemon=True)
        self._encoder_thread = threading.Thread(target=self._encode_loop, name="viewer-encode", daemon=True)

    @property
    def url(self) -> str:
        query = "?token=…" if self.config.token else ""
        return f"http://{self.config.host}:{self.port}/{query}"

    def sink(self, stream: str) -> PreviewSink:
        return PreviewSink(stream, self)

    @property
    def watching(self) -> int:
        return len(self._clients)

    def offer(self, record: FrameRecord) -> None:
        """Keep ``record`` as its stream's next preview (replacing one not yet encoded)."""
        with self._lock:
            counts = self.counts[record.stream]
            if not self._clients:
                counts.no_viewer += 1
                return
            if record.stream in self._pending:
                counts.replaced += 1
            self._pending[record.stream] = record
        self._frame_ready.set()

    # -- threads -------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._server_thread.start()
        where = f"{self.config.host}:{self.config.port}"
        if not self._started.wait(timeout):
            raise ViewerError(f"viewer: not listening on {where} after {timeout:g} s")
        if self._start_error is not None:
            raise ViewerError(f"viewer: cannot listen on {where}: {self._start_error}")
        self._encoder_thread.start()

    def stop(self) -> None:
        """Tell every tab the pipeline stopped, close the sockets and the server, join the threads."""
        self._stopping.set()
        self._frame_ready.set()
        if self._loop is not None and self._server_thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
            except Exception as exc:  # the run's own outcome matters more than a tab's goodbye
                log.warning("viewer: shutting down: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._server_thread.join(timeout=10)
        if self._encoder_thread.is_alive():
            self._encoder_thread.join(timeout=10)

    def _encode_loop(self) -> None:
        while not self._stopping.is_set():
            self._frame_ready.wait()
            self._frame_ready.clear()
            with self._lock:
                records, self._pending = list(self._pending.values()), {}
            for record in records:
                try:
                    message = encode_preview(record, self.config)
                except (ValueError, cv2.error) as exc:
                    log.warning("viewer: stream %s frame %d: %s", record.stream, record.seq, exc)
                    continue
                self.counts[record.stream].encoded += 1
                loop = self._loop
                if loop is not None and not self._stopping.is_set():
                    loop.call_soon_threadsafe(self._broadcast, record.stream, message)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._open())
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        stats = self._loop.create_task(self._stats_loop())
        try:
            self._loop.run_forever()
        finally:
            stats.cancel()
            self._loop.run_until_complete(asyncio.gather(stats, return_exceptions=True))
            self._loop.close()

    # -- the web side (on the server thread's loop) -------------------------------------------------
    async def _open(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/api/streams", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def _shutdown(self) -> None:
        goodbye = json.dumps({"type": "stopped"})
        for client in list(self._clients):
            with contextlib.suppress(ConnectionError, RuntimeError):  # the tab is going anyway
                await client.ws.send_str(goodbye)
                await client.ws.close()
        await self._runner.cleanup()

    def _authorised(self, request: Any) -> bool:
        if not self.config.token:
            return True
        return hmac.compare_digest(request.query.get("token", ""), self.config.token)

    async def _page(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return web.Response(status=401, text="this viewer needs ?token=<viewer.token>\n")
        html = resources.files("pipeline.viewer").joinpath("page.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _api(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return web.Response(status=401, text="token required\n")
        return web.json_response(self._stats())

    async def _socket(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return web.Response(status=401, text="token required\n")
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        client = _Client(ws)
        with self._lock:
            self._clients.add(client)
        sender = asyncio.get_running_loop().create_task(self._send_previews(client))
        try:
            await ws.send_str(json.dumps(self._stats()))
            async for _ in ws:  # the page sends nothing; this returns when the tab goes
                pass
        finally:
            with self._lock:
                self._clients.discard(client)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return ws

    def _broadcast(self, stream: str, message: bytes) -> None:
        for client in list(self._clients):
            if stream in client.pending:
                client.skipped += 1
            client.pending[stream] = message
            client.wake.set()

    async def _send_previews(self, client: _Client) -> None:
        while not client.ws.closed:
            await client.wake.wait()
            client.wake.clear()
            while client.pending:
                _, message = client.pending.popitem()
                await client.ws.send_bytes(message)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            stats = json.dumps(self._stats(tick=True))
            for client in list(self._clients):
                if not client.ws.closed:
                    with contextlib.suppress(ConnectionError, RuntimeError):  # the tab is going
                        await client.ws.send_str(stats)

    def _stats(self, tick: bool = False) -> dict[str, Any]:
        """Every stream's state, rates, latency and preview counts; ``tick`` appends to the history."""
        now = time.monotonic()
        streams = {}
        for sid, live in self._snapshot().items():
            s, hist = live.status, self._history[sid]
            e2e = live.recent_latency_ms.get("end_to_end", {})
            swaps = s.adaptations.get("swapped", 0)
            if tick:
                if hist.at:
                    rate = (s.published - hist.published) / max(now - hist.at, 1e-3)
                    hist.fps = rate if not hist.fps else 0.5 * hist.fps + 0.5 * rate
                hist.published, hist.at = s.published, now
                hist.p50.append(e2e.get("p50"))
                hist.swaps.append(swaps > hist.adaptations)
                hist.adaptations = swaps
            streams[sid] = {
                "state": s.state.value,
                "error": s.error,
                "frame_size": list(s.frame_size) if s.frame_size else None,
                "captured": s.captured,
                "published": s.published,
                "dropped": int(sum(live.ring.drops.values())),
                "unsent": dict(s.unsent),
                "reconnects": s.reconnects,
                "fps": round(hist.fps, 2),
                "latency_ms": {q: round(e2e[q], 1) for q in ("p50", "p95") if q in e2e},
                "latency_history": list(hist.p50),
                "swap_marks": [i for i, swapped in enumerate(hist.swaps) if swapped],
                "adaptations": dict(s.adaptations),
                "preview": self.counts[sid].to_json(),
            }
        return {"type": "stats", "streams": streams, "viewers": len(self._clients),
                "max_fps": self.config.max_fps}  # fmt: skip

    def report(self) -> dict[str, Any]:
        """What the run report keeps of the viewer: per stream preview counts."""
        return {sid: c.to_json() for sid, c in self.counts.items()}
