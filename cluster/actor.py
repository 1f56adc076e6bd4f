"""One live stream's whole path (capture -> ring -> inference -> publish) in one Ray actor.

The actor runs an ordinary one-stream :class:`pipeline.runner.Pipeline`, so frames never leave its
process; the driver (cluster.streams) reads snapshots and latency rows and, at the end, its report.
The class is plain Python: cluster.streams wraps it with ``ray.remote`` and the stream's resources.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import ClusterConfig, PipelineConfig, SourceConfig
from pipeline.runner import Pipeline, PipelineError
from pipeline.stages import LiveStream, StreamResume

log = logging.getLogger("cluster")


def actor_config(config: PipelineConfig, source: SourceConfig, publish_host: str) -> PipelineConfig:
    """The config an actor runs: its one source, a publisher on a free port of ``publish_host`` (several
    streams may share a node), no /metrics, viewer or report file (the driver serves and writes
    those for every stream) and no time limit of its own (the driver's ``duration_s`` ends the run)."""
    publish = dataclasses.replace(config.publish, endpoint=f"tcp://{publish_host}:*")
    return dataclasses.replace(
        config,
        sources=(source,),
        publish=publish,
        metrics=dataclasses.replace(config.metrics, enabled=False),
        viewer=dataclasses.replace(config.viewer, enabled=False),
        report=dataclasses.replace(config.report, dir="", plot=False),
        cluster=ClusterConfig(),
        duration_s=0.0,
    )


@dataclass(frozen=True)
class Started:
    node: str  # the address of the node the actor runs on
    node_id: str  # Ray's id of that node (nodes may share an address)
    pid: int
    endpoint: str | None  # the ZeroMQ endpoint subscribers connect to (None: publishing is off)
    engine: str
    error: str | None  # the stream could not start (a bad source, engine): not retried elsewhere


@dataclass(frozen=True)
class Poll:
    live: LiveStream
    rows: np.ndarray  # latency rows of the frames published since the last poll (LatencyProfiler.rows)
    compute_ms: list[float]  # inference times since the last poll
    running: bool  # False once the pipeline has ended (its source ended or the stream failed)
    fenced: bool  # it stopped itself, not polled for too long (the driver restarts it)


@dataclass(frozen=True)
class Finished:
    report: dict[str, Any] | None
    error: str | None
    last: Poll | None  # None: stopped before its pipeline started


class StreamActor:
    """Runs one stream's pipeline on a thread of the actor process (created by cluster.streams)."""

    def __init__(self, config: PipelineConfig, publish_host: str, resume: StreamResume | None, fence_s: float) -> None:
        import ray

        level = getattr(logging, config.log_level.upper(), logging.INFO)
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")  # Ray adds time and pid
        self.node = ray.util.get_node_ip_address()
        self.node_id = ray.get_runtime_context().get_node_id()
        self.source = config.sources[0]
        host = self.node if publish_host == "node" else publish_host
        self.config = actor_config(config, self.source, host)
        self.resume = resume
        self.stop_event = threading.Event()
        self.pipeline: Pipeline | None = None
        self._ready = threading.Event()
        self._report: dict[str, Any] | None = None
        self._error: str | None = None
        self._rows_sent = 0
        self._compute_sent = 0
        self._thread: threading.Thread | None = None
        # a lease: an actor the driver has not polled for fence_s stops its stream, so that when the
        # driver has given it up (its node unreachable) and started it elsewhere, one copy publishes
        self.fence_s = fence_s
        self._contact = time.monotonic()
        self.fenced = False

    def start(self, timeout_s: float) -> Started:
        """Build and start the pipeline; returns once it runs (engine built, publisher bound) or failed."""
        self._contact = time.monotonic()
        try:
            resume = {self.source.id: self.resume} if self.resume is not None else None
            self.pipeline = Pipeline(self.config, resume=resume)
        except (PipelineError, ValueError) as exc:
            return Started(self.node, self.node_id, os.getpid(), None, "", str(exc))
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{self.source.id}", daemon=True)
        self._thread.start()
        threading.Thread(target=self._fence, name=f"fence-{self.source.id}", daemon=True).start()
        if not self._ready.wait(timeout_s):
            log.warning("stream %s: not running after %.0f s; the driver goes on polling it", self.source.id, timeout_s)
        publisher = self.pipeline.publisher
        endpoint = publisher.endpoint if publisher is not None else None
        if endpoint and publish_host_is_wildcard(endpoint):
            endpoint = endpoint.replace("0.0.0.0", self.node, 1)
        return Started(self.node, self.node_id, os.getpid(), endpoint, self.pipeline.engine_description, self._error)

    def _run(self) -> None:
        try:
            self._report = self.pipeline.run(self.stop_event, on_ready=lambda _p: self._ready.set())
        except PipelineError as exc:
            self._error = str(exc)
        finally:
            self._ready.set()

    def _fence(self) -> None:
        while not self.stop_event.wait(0.25):
            silent = time.monotonic() - self._contact
            if silent > self.fence_s:
                log.warning("stream %s: the driver has not polled for %.1f s: stopping this copy (it may run "
                            "elsewhere now)", self.source.id, silent)  # fmt: skip
                self.fenced = True
                self.stop_event.set()

    def poll(self) -> Poll:
        self._contact = time.monotonic()
        pipeline = self.pipeline
        sid = self.source.id
        live = pipeline.snapshot()[sid]
        rows = pipeline.profiler.rows(sid, self._rows_sent)
        self._rows_sent += len(rows)
        fresh, self._compute_sent = pipeline.streams[sid].state.compute_since(self._compute_sent)
        return Poll(live, rows, fresh, self._thread is not None and self._thread.is_alive(), self.fenced)

    def finish(self, timeout_s: float) -> Finished:
        """Stop (drain, flush, close) and return the report; the last rows ride along."""
        self._contact = time.monotonic()
        self.stop_event.set()
        if self._thread is None:  # still building its pipeline (the driver kills the actor next)
            return Finished(None, None, None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.pipeline.interrupt("the cluster driver stopped waiting")
            self._thread.join(10.0)
        return Finished(self._report, self._error, self.poll())


def publish_host_is_wildcard(endpoint: str) -> bool:
    return endpoint.startswith("tcp://0.0.0.0:")
