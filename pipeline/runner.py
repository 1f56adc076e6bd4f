"""Wire the stages together for a :class:`~pipeline.config.PipelineConfig` and run them."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.build import BuildError, build_pipeline
from pipeline.config import PipelineConfig, SourceKind, to_dict
from pipeline.frame import FrameRecord, now_ns
from pipeline.metrics import MetricsServer
from pipeline.profiling import summarize, write_json
from pipeline.publish import PublishError, SendOutcome, ZmqPublisher
from pipeline.sources import Source
from pipeline.stages import Denoiser, LiveStream, PublishStage, StreamResume, StreamStatus
from pipeline.viewer import ViewerError, ViewerServer

log = logging.getLogger("pipeline")
PROGRESS_EVERY_S = 10.0
KEEP_UP_WINDOW_S = 5.0  # how often each stream's capture and denoise rates are compared
KEEP_UP_DROPPED = 0.1  # share of a window's frames the ring dropped before a stream warns (once)
STALE_WARN_AFTER = 30  # frames in a row too old to send before a stream warns that subscribers get nothing


class RunClock:
    """A run's time limit (``duration_s``; 0 = none) and its progress line every PROGRESS_EVERY_S."""

    def __init__(self, duration_s: float, log_progress: Callable[[], None]) -> None:
        self.duration_s = duration_s
        self.started_at = time.time()
        self._log_progress = log_progress
        self._next_progress = time.monotonic() + PROGRESS_EVERY_S

    def expired(self) -> bool:
        return bool(self.duration_s) and time.time() - self.started_at >= self.duration_s

    def tick(self) -> None:
        """Log progress when it is due."""
        if time.monotonic() >= self._next_progress:
            self._log_progress()
            self._next_progress = time.monotonic() + PROGRESS_EVERY_S


class PipelineError(RuntimeError):
    """A fatal pipeline error (bad source, engine, checkpoint, endpoint, failed stream)."""


@dataclass
class BackgroundRun:
    """A :meth:`Pipeline.background` run: set ``stop`` to end it early; ``report`` or ``error`` once
    it has ended."""

    stop: threading.Event
    report: dict[str, Any] | None = None
    error: PipelineError | None = None


class Pipeline:
    """Runs, supervises and stops what :func:`~pipeline.build.build_pipeline` built for every
    configured source: capture -> ring -> inference -> publish.

    ``model`` (an ``stbn.STBN``) replaces the checkpoint, ``denoiser_factory(stream_id)`` replaces the
    engine + streaming denoiser (benchmarks), ``sources`` replaces configured sources by id,
    ``resume`` says where a stream restarted in this process goes on from (the cluster layer).
    """

    def __init__(
        self,
        config: PipelineConfig,
        model: Any = None,
        denoiser_factory: Callable[[str], Denoiser] | None = None,
        sources: dict[str, Source] | None = None,
        resume: Mapping[str, StreamResume] | None = None,
    ) -> None:
        try:
            parts = build_pipeline(config, model, denoiser_factory, sources, resume)
        except BuildError as exc:
            raise PipelineError(str(exc)) from None
        self.config = config
        self.streams = parts.streams
        self.engines = parts.engines
        self.out = parts.out
        self.profiler = parts.profiler
        self._sinks = parts.sinks
        self._rtsp = parts.rtsp
        self._engine_desc = parts.engine_description
        # each stream's look-ahead is its denoiser's (a denoiser factory may differ from the config)
        self.lookaheads = {sid: st.inference.denoiser.lookahead for sid, st in self.streams.items()}
        self.publisher: ZmqPublisher | None = None
        self.metrics: MetricsServer | None = None
        self.viewer: ViewerServer | None = None
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.report: dict[str, Any] | None = None
        self._publish: PublishStage | None = None
        self._keep_up = _KeepUpWatch()
        # what run() opens it closes (in reverse order, after the publish stage has stopped)
        self._resources = contextlib.ExitStack()

    def _log_progress(self) -> None:
        """One line per stream every PROGRESS_EVERY_S: state, frames in and out, drops, reconnects;
        a stream that failed or ended has said so once and is not repeated."""
        for sid, st in self.streams.items():
            s = st.state.snapshot()
            if s.state in (StreamStatus.FAILED, StreamStatus.ENDED):
                continue
            unsent = "".join(f", {n} {reason}" for reason, n in sorted(s.unsent.items()))
            log.info(
                "stream %s: %s, %d captured, %d published%s, %d dropped, %d reconnects",
                sid, s.state.value, s.captured, s.published, unsent, sum(st.ring.stats().drops.values()), s.reconnects,
            )  # fmt: skip

    def _warn_if_every_frame_is_too_old(self) -> None:
        """publish.max_age_ms below a stream's own look-ahead latency drops every frame it publishes."""
        max_age = self.config.publish.max_age_ms
        if not (self.config.publish.enabled and max_age):
            return
        for sc in self.config.sources:
            lookahead_ms = 1000.0 * self.lookaheads[sc.id] / sc.fps
            if max_age <= lookahead_ms:
                log.warning(
                    "stream %s: publish.max_age_ms=%g is below its look-ahead's own latency (%d frames at %g fps = "
                    "%.0f ms, before any compute): every frame will be too old to send",
                    sc.id, max_age, self.lookaheads[sc.id], sc.fps, lookahead_ms,
                )  # fmt: skip

    def _start_viewer(self) -> None:
        """The browser page of every stream; its sinks take the published records (a preview
        skips frames, never holds one up)."""
        self.viewer = ViewerServer(self.config.viewer, list(self.streams), self.snapshot)
        self.viewer.start()
        self._resources.callback(_quietly, self.viewer.stop, "viewer")
        for sid in self.streams:
            self._sinks.setdefault(sid, []).append(self.viewer.sink(sid))
        log.info("viewer on %s", self.viewer.url)

    def _prebuild_engines(self) -> None:
        """Export / compile before the clock starts where the frame size is known (synthetic
        sources), so the first frames' latency does not include it."""
        for engine, sc in zip(self.engines, self.config.sources):
            if sc.kind is SourceKind.SYNTHETIC and engine.resolution != (sc.height, sc.width):
                start = time.perf_counter()
                engine.build(sc.height, sc.width)
                took = time.perf_counter() - start
                log.info("engine built for %s at %dx%d in %.1f s", sc.id, sc.width, sc.height, took)

    def interrupt(self, reason: str = "interrupted") -> None:
        """Stop waiting for lossless subscribers (a second Ctrl-C, or a drain past its timeout);
        the frames given up on are counted as ``abandoned`` in the report's publish stats."""
        if self.publisher is not None:
            if self.config.publish.lossless:  # without it nothing waits on subscribers: nothing to say
                log.warning("lossless delivery abandoned: %s", reason)
            self.publisher.interrupt()

    def _drain_blocker(self, drain: float) -> str:
        """What held the drain up, for the log and the report."""
        if self.publisher is not None and self.publisher.waiting_on_subscriber:
            return (f"a lossless subscriber stopped reading (its queue is full) and took no frame for "
                    f"{drain:g} s (publish.drain_timeout_s)")  # fmt: skip
        return f"the frames did not drain within {drain:g} s (publish.drain_timeout_s)"

    def _close_engines(self) -> None:
        for engine in self.engines:
            engine.close()

    # -- introspection -------------------------------------------------------------------------
    @property
    def engine_description(self) -> str:
        return self._engine_desc

    def snapshot(self) -> dict[str, LiveStream]:
        """Every stream's state, ring and recent latency (for /metrics and /healthz)."""
        live = {}
        for sid, st in self.streams.items():
            recent = {k: summarize(v[-300:]) for k, v in self.profiler.intervals_ms(sid).items()}
            live[sid] = LiveStream(st.state.snapshot(), st.ring.stats(), recent)
        return live

    # -- running -------------------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, on_ready: Callable[[Pipeline], None] | None = None
    ) -> dict[str, Any]:
        """Run until every source ended, ``duration_s`` passed, ``stop`` is set or a stream failed.

        Always stops capture, drains the rings, flushes the look-ahead frames, closes the sockets and
        builds the report (written when ``report.dir`` is set). Raises PipelineError on a failure.
        """
        stop = stop or threading.Event()
        try:
            self._open_outputs(stop)
        except (PublishError, PipelineError, ViewerError, OSError) as exc:
            self._resources.close()
            self._close_engines()
            raise PipelineError(str(exc)) from None
        self._prebuild_engines()
        clock = self._start_stages()
        if on_ready is not None:
            on_ready(self)
        try:
            self._supervise(stop, clock)
        finally:
            failure = self._shutdown()
        if failure:
            raise PipelineError(failure)
        return self.report or {}

    def _open_outputs(self, stop: threading.Event) -> None:
        """The publisher (and its wait for subscribers), the sinks, the RTSP re-serve, /metrics and
        the viewer, each closed by ``_resources`` at the end."""
        cfg = self.config
        if cfg.publish.enabled:
            self._open_publisher(stop)
        for sid, sinks in self._sinks.items():
            for sink in sinks:
                self._resources.callback(_quietly, sink.close, f"sink of {sid}")
        if self._rtsp is not None:
            self._rtsp.start()
            self._resources.callback(_quietly, self._rtsp.stop, "RTSP server")
            host, port = cfg.outputs.rtsp.host, self._rtsp.server.port
            log.info("re-serving RTSP at %s", ", ".join(f"rtsp://{host}:{port}/{s.id}" for s in cfg.sources))
        if cfg.metrics.enabled:
            try:
                self.metrics = MetricsServer(cfg.metrics.host, cfg.metrics.port, self.snapshot)
                self.metrics.start()
            except OSError as exc:
                raise PipelineError(f"metrics: cannot listen on {cfg.metrics.host}:{cfg.metrics.port}: {exc}") from None
            self._resources.callback(_quietly, self.metrics.stop, "metrics server")
            log.info("metrics on http://%s:%d/metrics", cfg.metrics.host, self.metrics.port)
        if cfg.viewer.enabled:
            self._start_viewer()

    def _open_publisher(self, stop: threading.Event) -> None:
        cfg = self.config.publish
        self.publisher = publisher = ZmqPublisher(cfg)
        publisher.open()
        self._resources.callback(_quietly, publisher.close, "publisher")
        log.info("publishing on %s (topics %s)", publisher.endpoint, [s.zmq_topic for s in self.config.sources])
        self._warn_if_every_frame_is_too_old()
        if not cfg.wait_subscribers:
            return
        log.info("waiting for %d subscriber(s) on %s", cfg.wait_subscribers, publisher.endpoint)
        if not publisher.wait_for_subscribers(cfg.wait_subscribers, cfg.wait_timeout_s, stop):
            log.warning(
                "publish.wait_subscribers: %d of %d subscriber(s) after %g s (publish.wait_timeout_s); "
                "starting anyway: frames sent before a subscriber joins are lost to it",
                publisher.subscriptions, cfg.wait_subscribers, cfg.wait_timeout_s,
            )  # fmt: skip

    def _start_stages(self) -> RunClock:
        """The publish stage, then per stream inference, adaptation and capture (the consumer before
        its producer); the run's clock starts here."""
        topics = {s.id: s.zmq_topic for s in self.config.sources}
        self._publish = PublishStage(self.out, self.publisher, topics, self.lookaheads, self._sinks, self._on_published)
        clock = RunClock(self.config.duration_s, self._log_progress)
        self.started_at = clock.started_at
        self._publish.start()
        for st in self.streams.values():
            st.inference.start()
            if st.adapter is not None:
                st.adapter.start()
            st.capture.start()
        return clock

    def _supervise(self, stop: threading.Event, clock: RunClock) -> None:
        """Watch the stages until the run should end: ``stop``, the publish stage failed, a stream
        failed (with fail_fast), every source ended, or the clock ran out."""
        while not stop.is_set():
            # one stream's failure stops that stream only; the others (and /metrics, /healthz)
            # go on, and the run ends as a failure naming it
            if self._publish is not None and self._publish.error is not None:
                return
            if self.config.fail_fast and self._failure():
                return
            for st in self.streams.values():
                if st.inference.error is not None and st.capture.alive:
                    st.capture.stop()
            if all(not st.capture.alive for st in self.streams.values()):
                return
            if clock.expired():
                return
            clock.tick()
            self._keep_up.check(self.streams)
            stop.wait(0.05)

    @contextlib.contextmanager
    def background(self, ready_timeout: float = 60.0) -> Iterator[BackgroundRun]:
        """Run on a thread while the block runs (a browser, a benchmark drives it meanwhile); the
        block starts once the stages are running and its end stops the run and waits for it."""
        run = BackgroundRun(threading.Event())
        ready = threading.Event()

        def target() -> None:
            try:
                run.report = self.run(run.stop, on_ready=lambda _: ready.set())
            except PipelineError as exc:
                run.error = exc
            finally:
                ready.set()

        thread = threading.Thread(target=target, name="pipeline")
        thread.start()
        if not ready.wait(ready_timeout) or run.error is not None:
            run.stop.set()
            thread.join()
            raise PipelineError(str(run.error) if run.error else f"not running after {ready_timeout:g} s")
        try:
            yield run
        finally:
            run.stop.set()
            thread.join()

    def _failure(self) -> str | None:
        """Every failure, one line each joined (a stream's own, then publishing's)."""
        failures = []
        for st in self.streams.values():
            if st.state.state is StreamStatus.FAILED:
                failures.append(st.state.error or f"stream {st.state.stream} failed")
                continue
            for stage in (st.capture, st.inference):
                if stage.error is not None:
                    failures.append(_clean(stage.error))
                    break
        if self._publish is not None and self._publish.error is not None:
            failures.append(f"publish: {_clean(self._publish.error)}")
        return "; ".join(failures) or None

    def _shutdown(self) -> str | None:
        """Stop capture, drain, flush, close; build and write the report. Returns a failure, if any."""
        for st in self.streams.values():
            st.capture.stop()
            if st.adapter is not None:
                st.adapter.stop()
        for st in self.streams.values():
            st.capture.join(timeout=10)
            if st.adapter is not None and not st.adapter.join(timeout=30):
                log.warning("stream %s: its adaptation round is still running after 30 s; the process exits "
                            "when it ends (a thread inside torch cannot be abandoned)", st.state.stream)  # fmt: skip
        for st in self.streams.values():
            if st.state.state is StreamStatus.FAILED or st.inference.error is not None:
                st.inference.stop()
        drain = self.config.publish.drain_timeout_s
        lossless = self.config.publish.enabled and self.config.publish.lossless
        if lossless:
            log.info(
                "stopping: waiting up to %g s (publish.drain_timeout_s) for lossless subscribers to take the last "
                "frames; a second Ctrl-C (or SIGTERM) gives up on them at once", drain,
            )  # fmt: skip
        # lossless: a subscriber that stopped reading holds everything up, so wait the drain timeout only
        deadline = time.monotonic() + (drain if lossless else max(drain, 120.0))
        for st in self.streams.values():
            if not st.inference.join(timeout=max(0.0, deadline - time.monotonic())):
                # a lossless subscriber that stopped reading holds the output ring full
                self.interrupt(self._drain_blocker(drain))
                if not st.inference.join(timeout=10):
                    st.inference.stop()
                    st.inference.join(timeout=10)
        self.out.close()
        if self._publish is not None and not self._publish.join(timeout=drain):
            self.interrupt(self._drain_blocker(drain))
            self._publish.stop()
            self._publish.join(timeout=10)
        self._resources.close()  # sockets, sinks, RTSP server, metrics: after the last frame went out
        self._close_engines()
        self.stopped_at = time.time()
        failure = self._failure()
        never = [sid for sid, st in self.streams.items() if not st.state.connected_once]
        if failure is None and never:  # retried until stopped without a single frame: not a success
            failure = f"stream(s) {', '.join(never)} never connected"
        self.report = self._build_report(failure)
        if self.config.report.dir:
            d = Path(self.config.report.dir)
            write_json(d / f"{self.config.report.name}.json", self.report)
            if self.config.report.plot:
                gaps = {sid: [g["last_seq_before"] for g in st.state.gaps] for sid, st in self.streams.items()}
                self.profiler.plot(d / f"{self.config.report.name}.png", gaps=gaps)
        return failure

    def _on_published(self, record: FrameRecord, outcome: SendOutcome) -> None:
        stale_run = self.streams[record.stream].state.record_sent(outcome)
        if stale_run == STALE_WARN_AFTER:  # once per run of stale frames
            age_ms = (now_ns() - record.capture_ns) / 1e6
            log.warning(
                "stream %s: the last %d frames were all older than publish.max_age_ms=%g when their turn came "
                "(this one %.0f ms): ZeroMQ subscribers get nothing; raise publish.max_age_ms above the "
                "pipeline's latency or lower the look-ahead",
                record.stream, stale_run, self.config.publish.max_age_ms, age_ms,
            )  # fmt: skip
        self.profiler.record(record)

    def _build_report(self, failure: str | None) -> dict[str, Any]:
        info = {}
        for sid, st in self.streams.items():
            ring = st.ring.stats()
            snap = st.state.snapshot().to_json()
            snap["ring"] = ring.to_json()
            snap["drops"] = dict(ring.drops)
            snap["compute_ms"] = list(st.state.compute_ms)
            sinks = [str(getattr(s, "path", "")) for s in self._sinks.get(sid, []) if getattr(s, "path", None)]
            snap["outputs"] = sinks
            info[sid] = snap
        report = self.profiler.report(self.lookaheads, info)
        return {
            "ok": failure is None,
            "error": failure,
            "engine": self._engine_desc,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "duration_s": round((self.stopped_at or 0) - (self.started_at or 0), 3),
            "publish": self.publisher.stats() if self.publisher is not None else None,
            "viewer": self.viewer.report() if self.viewer is not None else None,
            **report,
            "config": to_dict(self.config),
        }


def _quietly(close: Callable[[], None], what: str) -> None:
    """Close one resource; a failure is logged, never raised over the run's own outcome."""
    try:
        close()
    except Exception as exc:
        log.warning("closing the %s failed: %s", what, exc)


def _clean(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return text.strip().splitlines()[0] if text.strip() else exc.__class__.__name__


class _KeepUpWatch:
    """Warns once per stream when inference cannot keep up with a live source: the ring drops more
    than KEEP_UP_DROPPED of a window's frames (seen otherwise only in the counters)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int, int]] = {}  # stream -> (time, captured, dropped)
        self._warned: set[str] = set()

    def check(self, streams: dict[str, Any]) -> None:
        now = time.monotonic()
        for sid, st in streams.items():
            if sid in self._warned:
                continue
            captured, dropped = st.state.captured, sum(st.ring.stats().drops.values())
            then = self._last.setdefault(sid, (now, captured, dropped))
            if now - then[0] < KEEP_UP_WINDOW_S:
                continue
            self._last[sid] = (now, captured, dropped)
            seconds, new, lost = now - then[0], captured - then[1], dropped - then[2]
            if new >= 20 and lost > KEEP_UP_DROPPED * new:
                self._warned.add(sid)
                log.warning(
                    "stream %s: inference keeps up with %.1f of the source's %.1f frames/s (%.0f %% dropped by "
                    "the ring over the last %.0f s): lower the resolution or the look-ahead, or choose a faster "
                    "backend (engine.backend)",
                    sid, (new - lost) / seconds, new / seconds, 100.0 * lost / new, seconds,
                )  # fmt: skip
