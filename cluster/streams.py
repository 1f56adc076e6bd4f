"""Live streams on a Ray cluster: every configured stream in its own actor (cluster.actor), supervised
by the driver.

The driver places one actor per stream by its declared resources, reads every actor's snapshot and
new latency rows each ``cluster.poll_s``, and restarts a stream whose actor or node was lost on
another node (bounded restarts with back-off). A restart is reported like an RTSP reconnect: a new
epoch, a gap, sequence numbers that go on above the lost ones. One /metrics and /healthz on the
driver show every stream (and where it runs); the end writes one merged report in the shape of a
single process's.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.actor import Finished, Poll, Started, StreamActor
from cluster.connect import AddressKind, ClusterAddress, ClusterUnavailable, connected, first_line
from pipeline.config import PipelineConfig, SourceConfig, to_dict
from pipeline.metrics import MetricsServer
from pipeline.profiling import LatencyProfiler, write_json
from pipeline.ring import RingStats
from pipeline.run import RunSummary, stop_on_signals
from pipeline.runner import RunClock
from pipeline.stages import LiveStream, StreamResume, StreamSnapshot, StreamStatus

log = logging.getLogger("cluster")

START_TIMEOUT_S = 120.0  # an actor's engine build (an export on first use) and socket bind
LOST_AFTER_S = 10.0  # an actor that has not answered a poll for this long is taken as lost
FENCE_S = 5.0  # an actor not polled for this long stops its stream itself (cluster.actor): < LOST_AFTER_S
SUMMED = ("captured", "inferred", "published", "denoiser_resets")  # counters that add up over generations


class SlotState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTART_PENDING = "restart-pending"
    ENDED = "ended"
    FAILED = "failed"


@dataclass
class Generation:
    """One actor's life for a stream."""

    index: int
    node: str = ""
    node_id: str = ""
    pid: int = 0
    endpoint: str | None = None
    started_at: float = 0.0  # the actor was asked for
    running_at: float | None = None  # its pipeline ran (engine built, publisher bound)
    ended_at: float | None = None
    end: str = ""  # ended / stopped / failed: ... / lost: ...
    first_seq: int = 0
    last: LiveStream | None = None  # the newest snapshot
    polled_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        published = self.last.status.published if self.last else 0
        fields = ("node", "node_id", "pid", "endpoint", "started_at", "running_at", "ended_at", "end", "first_seq")
        return {"generation": self.index, **{k: getattr(self, k) for k in fields}, "published": published}


@dataclass(frozen=True)
class StreamResources:
    """What one stream's actor asks the scheduler for."""

    num_cpus: float
    num_gpus: float
    node: str  # pinned to the node of this address; "" = anywhere

    def fits(self, node: dict[str, Any]) -> bool:
        """Whether a node of ``ray.nodes()`` has the CPUs and GPUs in all."""
        have = node.get("Resources", {})
        return have.get("CPU", 0) >= self.num_cpus and have.get("GPU", 0) >= self.num_gpus


@dataclass
class StreamSlot:
    """The driver's record of one stream: its actor, its generations, what they counted."""

    source: SourceConfig
    resources: StreamResources
    state: SlotState = SlotState.STARTING
    actor: Any = None
    generations: list[Generation] = field(default_factory=list)
    restarts: int = 0
    restart_at: float = 0.0
    pending_resume: StreamResume | None = None
    avoid_node: str = ""  # the id of the node the stream was lost on
    error: str | None = None
    start_ref: Any = None  # the actor's pending start()
    start_deadline: float = 0.0
    final_report: dict[str, Any] | None = None  # the last actor's per-stream report
    publish_stats: dict[str, Any] | None = None

    @property
    def current(self) -> Generation | None:
        return self.generations[-1] if self.generations else None


class ClusterRun:
    """Runs ``config``'s streams on the Ray cluster ``ray`` is connected to (cluster.connect)."""

    def __init__(self, config: PipelineConfig, ray: Any) -> None:
        self.config = config
        self.cluster = config.cluster
        self.ray = ray
        self._lock = threading.Lock()  # slots are written by the loop and read by /metrics
        self.slots = {s.id: StreamSlot(s, self._resources(s)) for s in config.sources}
        self.profiler = LatencyProfiler([s.id for s in config.sources], config.report.max_frames)
        # as many as the report keeps rows: a driver that runs for days holds a bounded window
        keep = config.report.max_frames
        self.compute_ms: dict[str, deque[float]] = {s.id: deque(maxlen=keep) for s in config.sources}
        self.engine = ""
        self.metrics: MetricsServer | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._remote = ray.remote(StreamActor)
        local = ClusterAddress.parse(self.cluster.address).kind is AddressKind.LOCAL
        # a run of this machine alone publishes on the loopback, as without a cluster
        self.publish_host = "127.0.0.1" if local and self.cluster.publish_host == "node" else self.cluster.publish_host

    # -- placement -----------------------------------------------------------------------------------
    def _resources(self, source: SourceConfig) -> StreamResources:
        own = self.cluster.placement(source.id)
        engine = self.config.engine
        cpus = own.num_cpus if own.num_cpus is not None else (self.cluster.num_cpus or max(1, engine.threads))
        gpus = own.num_gpus if own.num_gpus is not None else self.cluster.num_gpus
        if gpus is None:
            gpus = 1.0 if engine.device.startswith("cuda") else 0.0
        return StreamResources(cpus, gpus, own.node)

    def _strategy(self, slot: StreamSlot) -> Any:
        """Where the scheduler may put the stream: its configured node, away from the node it was
        lost on (soft: anywhere if no other node fits), or spread over the nodes."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        pinned = slot.resources.node
        if pinned:
            node = next((n for n in nodes if n.get("NodeManagerAddress") == pinned), None)
            if node is None:
                raise ClusterUnavailable(f"stream {slot.source.id}: no live node at {pinned} (cluster.streams.node)")
            return NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        if slot.avoid_node:
            others = [n for n in nodes if n.get("NodeID") != slot.avoid_node and slot.resources.fits(n)]
            if others:
                target = others[slot.restarts % len(others)]
                return NodeAffinitySchedulingStrategy(target["NodeID"], soft=True)
        return "SPREAD" if self.cluster.spread else "DEFAULT"

    def _create(self, slot: StreamSlot) -> None:
        """Create the stream's actor and ask it to start its pipeline (the engine build happens there);
        :meth:`_check_starts` sees it running. Never waits: the other streams stay supervised."""
        resume = slot.pending_resume
        options = {
            "num_cpus": slot.resources.num_cpus,
            "num_gpus": slot.resources.num_gpus,
            "max_restarts": 0,  # the driver restarts, with the seq and epoch bookkeeping
            "max_concurrency": 4,  # poll while finish drains
            "scheduling_strategy": self._strategy(slot),
        }
        config = self.config_for(slot.source)
        actor = self._remote.options(**options).remote(config, self.publish_host, resume, FENCE_S)
        first_seq = resume.first_seq if resume else 0
        with self._lock:
            slot.generations.append(Generation(len(slot.generations), started_at=time.time(), first_seq=first_seq))
            slot.actor = actor
            slot.start_ref = actor.start.remote(START_TIMEOUT_S)
            slot.start_deadline = time.time() + START_TIMEOUT_S + 30
            slot.state = SlotState.STARTING

    def _check_starts(self) -> None:
        for slot in self.slots.values():
            if slot.state is not SlotState.STARTING:
                continue
            ready, _ = self.ray.wait([slot.start_ref], timeout=0)
            if not ready:
                if time.time() > slot.start_deadline:
                    self.ray.kill(slot.actor, no_restart=True)
                    self._lost(slot, f"not started within {START_TIMEOUT_S + 30:.0f} s")
                continue
            try:
                started: Started = self.ray.get(slot.start_ref)
            except self._actor_errors() as exc:
                self._lost(slot, f"could not start: {first_line(exc)}")
                continue
            self._started(slot, started)

    def _started(self, slot: StreamSlot, started: Started) -> None:
        gen = slot.current
        with self._lock:
            gen.node, gen.node_id, gen.pid, gen.endpoint = started.node, started.node_id, started.pid, started.endpoint
            gen.polled_at = gen.running_at = time.time()
            slot.start_ref = None
            self.engine = self.engine or started.engine
            if started.error is not None:  # the stream itself cannot run (a bad source): as in one process
                slot.state, slot.error, gen.end = SlotState.FAILED, started.error, f"failed: {started.error}"
                log.error("stream %s: %s", slot.source.id, started.error)
                return
            slot.state = SlotState.RUNNING
        log.info(
            "stream %s: running on node %s (pid %d)%s%s", slot.source.id, started.node, started.pid,
            f", publishing on {started.endpoint} (topic {slot.source.zmq_topic})" if started.endpoint else "",
            f", restart {slot.restarts}" if slot.restarts else "",
        )  # fmt: skip

    def config_for(self, source: SourceConfig) -> PipelineConfig:
        return dataclasses.replace(self.config, sources=(source,))

    # -- supervision ----------------------------------------------------------------------------------
    def _check_feasible(self) -> None:
        """Every stream's resources fit some node (else Ray would wait for them forever)."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        for slot in self.slots.values():
            want = slot.resources
            if not any(want.fits(n) for n in nodes):
                have = ", ".join(
                    f"{n['Resources'].get('CPU', 0):g} CPU / {n['Resources'].get('GPU', 0):g} GPU" for n in nodes
                )
                raise ClusterUnavailable(
                    f"stream {slot.source.id} asks for {want.num_cpus:g} CPU / {want.num_gpus:g} GPU, more than any "
                    f"node has ({have}); lower cluster.num_cpus / num_gpus or cluster.streams"
                )

    def _actor_errors(self) -> tuple[type[BaseException], ...]:
        exc = self.ray.exceptions
        return (exc.RayActorError, exc.GetTimeoutError, exc.ActorUnavailableError, exc.RaySystemError)

    def _poll(self) -> None:
        running = {sid: s for sid, s in self.slots.items() if s.state is SlotState.RUNNING}
        if not running:
            return
        refs = {sid: s.actor.poll.remote() for sid, s in running.items()}
        ready, _ = self.ray.wait(list(refs.values()), num_returns=len(refs), timeout=self.cluster.poll_s * 2)
        ready_set = set(ready)
        now = time.time()
        for sid, ref in refs.items():
            slot = running[sid]
            gen = slot.current
            if ref not in ready_set:
                if now - gen.polled_at > LOST_AFTER_S:
                    self.ray.kill(slot.actor, no_restart=True)
                    self._lost(slot, f"no answer for {LOST_AFTER_S:.0f} s")
                continue
            try:
                poll: Poll = self.ray.get(ref)
            except self._actor_errors() as exc:
                self._lost(slot, first_line(exc))
                continue
            self._take(slot, poll, now)
            if not poll.running:
                self._finish(slot)
                if poll.fenced:  # it stopped itself while this driver was not polling: not an end
                    self._lost(slot, f"not polled for {FENCE_S:.0f} s, it stopped itself")

    def _take(self, slot: StreamSlot, poll: Poll, now: float) -> None:
        sid = slot.source.id
        self.profiler.extend(sid, poll.rows)
        with self._lock:
            self.compute_ms[sid].extend(poll.compute_ms)
            slot.current.last = poll.live
            slot.current.polled_at = now
            slot.pending_resume = None  # polled: a later loss resumes from this generation's snapshot

    def _finish(self, slot: StreamSlot, timeout_s: float = 60.0) -> None:
        """Stop an actor and collect its report (its pipeline ended)."""
        self._collect(slot, slot.actor.finish.remote(timeout_s), timeout_s + 30)

    def _collect(self, slot: StreamSlot, finishing: Any, timeout_s: float) -> None:
        """An actor's report from its ``finish`` call ``finishing``."""
        try:
            done: Finished = self.ray.get(finishing, timeout=timeout_s)
        except (*self._actor_errors(), self.ray.exceptions.RayTaskError) as exc:
            self._lost(slot, first_line(exc), restart=False)
            return
        if done.last is not None:
            self._take(slot, done.last, time.time())
        gen = slot.current
        with self._lock:
            gen.ended_at = time.time()
            slot.final_report = (done.report or {}).get("streams", {}).get(slot.source.id)
            slot.publish_stats = (done.report or {}).get("publish")
            if done.error is not None:
                slot.state, slot.error, gen.end = SlotState.FAILED, done.error, f"failed: {done.error}"
            else:
                slot.state, gen.end = SlotState.ENDED, gen.last.status.state.value if gen.last else "ended"
        self.ray.kill(slot.actor, no_restart=True)
        slot.actor = None

    def _lost(self, slot: StreamSlot, why: str, restart: bool = True) -> None:
        """The actor (or its node) is gone: schedule a restart elsewhere, or fail the stream."""
        gen = slot.current  # a slot is lost only once its first actor was created
        now = time.time()
        with self._lock:
            gen.ended_at, gen.end = now, f"lost: {why}"
            slot.actor = None
            if not restart or slot.restarts >= self.cluster.max_restarts:
                slot.state = SlotState.FAILED
                slot.error = (
                    f"actor lost ({why}) while stopping" if not restart
                    else f"actor lost ({why}); {slot.restarts} restart(s), cluster.max_restarts reached"
                )  # fmt: skip
                log.error("stream %s: %s", slot.source.id, slot.error)
                return
            slot.restarts += 1
            delay = min(self.cluster.restart_max_s, self.cluster.restart_initial_s * 2 ** (slot.restarts - 1))
            slot.state, slot.restart_at = SlotState.RESTART_PENDING, now + delay
            slot.avoid_node = gen.node_id
            slot.pending_resume = self._resume(slot, now, why)
        log.warning(
            "stream %s: actor on node %s lost (%s); restart %d of at most %d in %.1f s",
            slot.source.id, gen.node or "?", why, slot.restarts, self.cluster.max_restarts, delay,
        )  # fmt: skip

    def _resume(self, slot: StreamSlot, now: float, why: str) -> StreamResume:
        """Where the restarted stream goes on from: sequence numbers above any the lost actor may have
        used since its last poll (at the rate it captured, until it fenced itself: it may outlive its
        node's loss, or be cut off rather than dead), a new epoch, the restart counted as a reconnect."""
        gen = slot.current
        if gen.last is not None:
            status = gen.last.status
            last_seq = gen.first_seq + status.captured - 1
            rate = max(status.captured / max(now - gen.started_at, 1e-3), slot.source.fps)
            since = gen.polled_at
            epoch, reconnects, gaps = status.epoch, status.reconnects, status.gaps
        else:  # lost before its first poll: whatever it captured since it was asked for is unseen
            base = slot.pending_resume  # the resume it was started from, if it was a restart
            last_seq, rate, since = gen.first_seq - 1, slot.source.fps, gen.started_at
            epoch, reconnects, gaps = (base.epoch, base.reconnects, base.gaps) if base else (0, 0, ())
        unseen = math.ceil(rate * (max(now, since + FENCE_S) - since)) + 1
        return StreamResume(
            first_seq=last_seq + 1 + unseen,
            epoch=epoch + 1,
            reconnects=reconnects + 1,
            gaps=gaps,
            last_seq_before=last_seq,
            lost_at=now,
            cause=f"actor restarted ({why})",
        )

    def _restart_due(self) -> None:
        now = time.time()
        for slot in self.slots.values():
            if slot.state is SlotState.RESTART_PENDING and now >= slot.restart_at:
                try:
                    self._create(slot)
                except ClusterUnavailable as exc:
                    with self._lock:
                        slot.state, slot.error = SlotState.FAILED, str(exc)

    # -- what /metrics, /healthz and the report read -----------------------------------------------------
    def snapshot(self) -> dict[str, LiveStream]:
        with self._lock:
            return {sid: live for sid, slot in self.slots.items() if (live := _merged_live(slot)) is not None}

    def placement(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out = {}
            for sid, slot in self.slots.items():
                gen = slot.current
                out[sid] = {
                    "node": gen.node if gen else "", "endpoint": gen.endpoint if gen else None,
                    "topic": slot.source.zmq_topic, "generation": gen.index if gen else None,
                    "restarts": slot.restarts, "cluster_state": slot.state.value,
                }  # fmt: skip
            return out

    # -- the run ---------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> dict[str, Any]:
        cfg = self.config
        if cfg.metrics.enabled:
            try:
                self.metrics = MetricsServer(cfg.metrics.host, cfg.metrics.port, self.snapshot, self.placement)
            except OSError as exc:
                raise ClusterUnavailable(
                    f"metrics: cannot listen on {cfg.metrics.host}:{cfg.metrics.port}: {exc}"
                ) from None
            self.metrics.start()
            log.info("metrics for every stream on http://%s:%d/metrics", cfg.metrics.host, self.metrics.port)
        try:
            self._check_feasible()
            clock = RunClock(cfg.duration_s, self._log_progress)
            self.started_at = clock.started_at
            for slot in self.slots.values():
                self._create(slot)
            while not stop.is_set():
                self._check_starts()
                self._poll()
                self._restart_due()
                states = {s.state for s in self.slots.values()}
                if states <= {SlotState.ENDED, SlotState.FAILED}:
                    break
                if cfg.fail_fast and SlotState.FAILED in states:
                    break
                if clock.expired():
                    break
                clock.tick()
                stop.wait(self.cluster.poll_s)
        finally:
            self._stop_all()
            if self.metrics is not None:
                self.metrics.stop()
        self.stopped_at = time.time()
        return self._report()

    def _stop_all(self) -> None:
        drain = self.config.publish.drain_timeout_s + 30.0
        # every actor drains at once: a stop takes one drain, not one per stream
        finishing = {
            sid: slot.actor.finish.remote(drain)
            for sid, slot in self.slots.items()
            if slot.actor is not None and slot.state in (SlotState.RUNNING, SlotState.STARTING)
        }
        deadline = time.monotonic() + drain + 30
        for sid, ref in finishing.items():
            self._collect(self.slots[sid], ref, max(1.0, deadline - time.monotonic()))
        for slot in self.slots.values():
            if slot.state is SlotState.RESTART_PENDING:
                with self._lock:
                    slot.state = SlotState.FAILED
                    slot.error = slot.error or "stopped while waiting to restart"

    def _log_progress(self) -> None:
        for sid, live in self.snapshot().items():
            slot = self.slots[sid]
            s = live.status
            node = slot.current.node if slot.current else "?"
            log.info("stream %s on %s: %s, %d published, %d restart(s)", sid, node, s.state.value, s.published,
                     slot.restarts)  # fmt: skip

    def _report(self) -> dict[str, Any]:
        info: dict[str, dict[str, Any]] = {}
        for sid, slot in self.slots.items():
            live = _merged_live(slot)
            entry = live.status.to_json() if live is not None else {"state": "never-started"}
            if slot.final_report:
                entry["outputs"] = slot.final_report.get("outputs", [])
            if live is not None:
                entry["ring"] = live.ring.to_json()
                entry["drops"] = dict(live.ring.drops)
            entry["compute_ms"] = list(self.compute_ms[sid])
            entry["cluster"] = {
                "restarts": slot.restarts,
                "state": slot.state.value,
                "error": slot.error,
                "generations": [g.to_json() for g in slot.generations],
                "publish": slot.publish_stats,
            }
            info[sid] = entry
        lookaheads = {sid: self.config.lookahead for sid in self.slots}
        failures = [f"stream {sid}: {s.error}" for sid, s in self.slots.items() if s.state is SlotState.FAILED]
        report = self.profiler.report(lookaheads, info)
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {
            "ok": not failures,
            "error": "; ".join(failures) or None,
            "engine": self.engine,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "duration_s": round((self.stopped_at or 0) - (self.started_at or 0), 3),
            "cluster": {
                "address": self.cluster.address,
                "nodes_alive_at_end": len(nodes),
                "restarts": sum(s.restarts for s in self.slots.values()),
                "placement": self.placement(),
            },
            **report,
            "config": to_dict(self.config),
        }


def _merged_live(slot: StreamSlot) -> LiveStream | None:
    """The stream over every generation: counters summed, state, epoch and gaps of the newest."""
    seen = [g.last for g in slot.generations if g.last is not None]
    if not seen:
        return None
    newest = seen[-1]
    status = newest.status
    sums = {k: sum(getattr(g.status, k) for g in seen) for k in SUMMED}
    unsent: dict[str, int] = {}
    drops: dict[str, int] = {}
    for g in seen:
        for k, n in g.status.unsent.items():
            unsent[k] = unsent.get(k, 0) + n
        for k, n in g.ring.drops.items():
            drops[k] = drops.get(k, 0) + n
    state = status.state
    if slot.state is SlotState.RESTART_PENDING:
        state = StreamStatus.RECONNECTING  # a lost actor is, to a reader, a source reconnecting
    elif slot.state is SlotState.FAILED:
        state = StreamStatus.FAILED
    connected = any(g.status.connected_once for g in seen)
    error = slot.error or status.error
    merged: StreamSnapshot = dataclasses.replace(
        status, state=state, unsent=unsent, error=error, connected_once=connected, **sums
    )
    ring: RingStats = dataclasses.replace(newest.ring, drops=drops)
    return LiveStream(merged, ring, newest.recent_latency_ms)


def run_streams(config: PipelineConfig, prog: str) -> int:
    """``stbn run --cluster ...``: every stream in its own actor until the sources end or a signal."""
    if config.viewer.enabled or config.outputs.rtsp.enabled:
        what = "viewer" if config.viewer.enabled else "outputs.rtsp"
        print(f"{prog}: config error: {what} is not available on a cluster yet (each stream runs on its own "
              "node); subscribe to the streams' ZeroMQ endpoints instead", file=sys.stderr)  # fmt: skip
        return 2
    run: ClusterRun | None = None
    stop = stop_on_signals(lambda reason: log.warning("%s: the actors are already draining", reason))
    try:
        with connected(config.cluster.address) as ray:
            run = ClusterRun(config, ray)
            report = run.run(stop)
    except ClusterUnavailable as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if config.report.dir:
        path = Path(config.report.dir) / f"{config.report.name}.json"
        write_json(path, report)
        if config.report.plot:
            run.profiler.plot(Path(config.report.dir) / f"{config.report.name}.png")
    where = f"; report in {config.report.dir}/{config.report.name}.json" if config.report.dir else ""
    restarts = report["cluster"]["restarts"]
    print(f"{prog}: {RunSummary.of(report).line()}, {restarts} actor restart(s){where}", file=sys.stderr)
    if not report["ok"]:
        print(f"{prog}: error: {report['error']}", file=sys.stderr)
        return 1
    return 0
