"""Prometheus ``/metrics`` and ``/healthz`` over a tiny HTTP server (no global registry)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from pipeline.stages import STATES, LiveStream, StreamStatus

Snapshot = Callable[[], dict[str, LiveStream]]


# stream -> where it runs, for a pipeline spread over machines (the cluster layer): node, ZeroMQ
# endpoint, restarts; shown in /healthz and as the labels of stbn_stream_placement
Placement = Callable[[], dict[str, dict[str, Any]]]


class _Collector:
    def __init__(self, snapshot: Snapshot, placement: Placement | None) -> None:
        self._snapshot = snapshot
        self._placement = placement

    def collect(self) -> Any:
        snap = self._snapshot()
        if self._placement is not None:
            where = GaugeMetricFamily(
                "stbn_stream_placement", "1 where each stream runs (node, ZeroMQ endpoint)",
                labels=["stream", "node", "endpoint"],
            )  # fmt: skip
            for stream, info in self._placement().items():
                where.add_metric([stream, str(info.get("node", "")), str(info.get("endpoint", ""))], 1.0)
            yield where
        state = GaugeMetricFamily("stbn_stream_state", "1 for the stream's current state", labels=["stream", "state"])
        frames = CounterMetricFamily("stbn_frames", "frames per stream and stage", labels=["stream", "stage"])
        drops = CounterMetricFamily("stbn_drops", "frames dropped by the ring, per reason", labels=["stream", "reason"])
        unsent = CounterMetricFamily(
            "stbn_unsent", "frames the publisher did not send (stale: older than publish.max_age_ms; abandoned: "
            "lossless, given up at shutdown)", labels=["stream", "reason"],
        )  # fmt: skip
        reconnects = CounterMetricFamily("stbn_reconnects", "source reconnections", labels=["stream"])
        depth = GaugeMetricFamily("stbn_ring_depth", "frames waiting in the ring", labels=["stream"])
        latency = GaugeMetricFamily("stbn_latency_ms", "recent latency percentiles", labels=["stream", "interval", "q"])
        adaptations = CounterMetricFamily(
            "stbn_adaptations", "online adaptation rounds per outcome", labels=["stream", "outcome"]
        )
        for stream, live in snap.items():
            s = live.status
            for name in STATES:
                state.add_metric([stream, name], 1.0 if s.state.value == name else 0.0)
            for stage, n in (("captured", s.captured), ("inferred", s.inferred), ("published", s.published)):
                frames.add_metric([stream, stage], n)
            for reason, n in live.ring.drops.items():
                drops.add_metric([stream, reason], n)
            for reason in ("stale", "abandoned"):
                unsent.add_metric([stream, reason], s.unsent.get(reason, 0))
            reconnects.add_metric([stream], s.reconnects)
            for outcome, n in s.adaptations.items():
                adaptations.add_metric([stream, outcome], n)
            depth.add_metric([stream], live.ring.depth)
            for interval, qs in live.recent_latency_ms.items():
                for q in ("p50", "p95", "p99"):
                    if q in qs:
                        latency.add_metric([stream, interval, q], qs[q])
        yield from (state, frames, drops, unsent, reconnects, depth, latency, adaptations)


class MetricsServer:
    """Serves ``/metrics`` (Prometheus text) and ``/healthz`` (JSON; 503 if a stream failed or has never
    connected); ``placement`` adds where each stream runs."""

    def __init__(self, host: str, port: int, snapshot: Snapshot, placement: Placement | None = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(snapshot, placement))
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, code, ctype = generate_latest(registry), 200, "text/plain; version=0.0.4"
                elif self.path.startswith("/healthz"):
                    live = snapshot()
                    states = {k: v.status.state.value for k, v in live.items()}
                    # a stream that has never connected (a wrong URL, a camera that is off) is not
                    # healthy either, however patiently it retries
                    never = sorted(k for k, v in live.items() if not v.status.connected_once)
                    ok = all(v.status.state is not StreamStatus.FAILED for v in live.values()) and not never
                    health: dict[str, Any] = {"ok": ok, "streams": states}
                    if never:
                        health["never_connected"] = never
                    if placement is not None:
                        health["placement"] = placement()
                    body = json.dumps(health).encode()
                    code, ctype = (200 if ok else 503), "application/json"
                else:
                    body, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
