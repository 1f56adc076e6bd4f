"""The stages: capture -> ring -> inference -> publish. Each is a thread with start/stop/join, a
stop event, and its shutdown in ``finally``."""

from __future__ import annotations

import abc
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pipeline.config import SourceConfig
from pipeline.frame import FrameRecord, now_ns
from pipeline.publish import SendOutcome, ZmqPublisher
from pipeline.ring import OverflowPolicy, RingBuffer, RingStats
from pipeline.sinks import Sink
from pipeline.sources import Source, SourceDisconnected, SourceError

log = logging.getLogger("pipeline")

class StreamStatus(str, enum.Enum):
    """What a stream is doing; the moves between them are :data:`TRANSITIONS`."""

    CONNECTING = "connecting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"


_S = StreamStatus
TRANSITIONS: dict[StreamStatus, frozenset[StreamStatus]] = {
    _S.CONNECTING: frozenset({_S.RUNNING, _S.RECONNECTING, _S.ENDED, _S.FAILED}),
    _S.RUNNING: frozenset({_S.RECONNECTING, _S.ENDED, _S.FAILED}),
    _S.RECONNECTING: frozenset({_S.RUNNING, _S.ENDED, _S.FAILED}),
    _S.ENDED: frozenset({_S.FAILED}),  # the inference stage can still fail on the last frames
    _S.FAILED: frozenset(),  # the first failure is what the report shows
}
STATES = tuple(s.value for s in StreamStatus)


@dataclass(frozen=True)
class StreamSnapshot:
    """A stream's state at one moment (metrics, /healthz, progress lines, the report)."""

    stream: str
    state: StreamStatus
    error: str | None
    epoch: int
    reconnects: int
    captured: int
    inferred: int
    published: int  # sent over ZeroMQ (handed to the sinks when ZeroMQ is off)
    unsent: dict[str, int]  # SendOutcome value (stale, abandoned) -> frames the publisher did not send
    denoiser_resets: int
    gaps: tuple[dict[str, Any], ...]
    frame_size: tuple[int, int] | None
    connected_once: bool
    warnings: tuple[str, ...]
    adaptations: dict[str, int]  # outcome -> rounds
    last_adaptation: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "error": self.error,
            "epoch": self.epoch,
            "reconnects": self.reconnects,
            "captured": self.captured,
            "inferred": self.inferred,
            "published": self.published,
            "unsent": dict(self.unsent),
            "denoiser_resets": self.denoiser_resets,
            "gaps": [dict(g) for g in self.gaps],
            "frame_size": list(self.frame_size) if self.frame_size else None,
            "connected_once": self.connected_once,
            "warnings": list(self.warnings),
            "adaptations": dict(self.adaptations),
            "last_adaptation": self.last_adaptation,
        }


@dataclass(frozen=True)
class LiveStream:
    """What /metrics and /healthz read of one running stream."""

    status: StreamSnapshot
    ring: RingStats
    recent_latency_ms: dict[str, dict[str, float]]  # interval -> percentiles of the last frames


@dataclass(frozen=True)
class StreamResume:
    """Where a stream restarted in a new process goes on from (the cluster layer restarts a stream
    whose actor or node was lost): reported like a reconnect, a new epoch and a gap, and sequence
    numbers that go on above every number the lost process may have used."""

    first_seq: int
    epoch: int  # the new epoch (the lost process's + 1)
    reconnects: int  # including this restart
    gaps: tuple[dict[str, Any], ...]  # the earlier gaps
    last_seq_before: int  # the last sequence number known to be captured before the loss
    lost_at: float  # when the loss was noticed (time.time())
    cause: str


class StreamState:
    """What one stream is doing, for metrics, /healthz and the report (updated by its stages)."""

    def __init__(self, stream: str, resume: StreamResume | None = None) -> None:
        self.stream = stream
        self.state = StreamStatus.CONNECTING
        self.error: str | None = None
        self.epoch = 0
        self.reconnects = 0
        self.captured = 0
        self.inferred = 0
        self.published = 0
        self.unsent: dict[str, int] = {}
        self._stale_run = 0  # frames in a row that were too old to send
        self.resets = 0
        self.gaps: list[dict[str, Any]] = []
        self.compute_ms: deque[float] = deque(maxlen=100_000)
        self._compute_recorded = 0  # every compute time ever recorded (the deque keeps the last ones)
        self.frame_size: tuple[int, int] | None = None
        self.connected_once = False
        self.warnings: list[str] = []  # what a source reported at its end (a truncated file)
        self.adaptations: dict[str, int] = {}  # outcome -> count (swapped, rolled_back, ...)
        self.last_adaptation: dict[str, Any] | None = None
        self._lock = threading.Lock()
        if resume is not None:
            self.epoch, self.reconnects = resume.epoch, resume.reconnects
            resumed = time.time()
            self.gaps = [*resume.gaps, {
                "epoch": resume.epoch,
                "last_seq_before": resume.last_seq_before,
                "lost_at": resume.lost_at,
                "resumed_at": resumed,
                "gap_s": round(resumed - resume.lost_at, 3),
                "cause": resume.cause,
            }]  # fmt: skip

    # Every write below takes the lock: the capture, inference and publish threads and the
    # adapter write, /metrics, /healthz and the viewer read (snapshot) at any time.
    def record_connected(self) -> None:
        with self._lock:
            self.connected_once = True
            self.error = None  # the error that caused a reconnect is over

    def record_reconnected(self, last_seq: int, lost_at: float | None) -> int:
        """A source back after an outage: a new epoch and a gap; returns the epoch."""
        resumed = time.time()
        with self._lock:
            self.epoch += 1
            self.reconnects += 1
            self.gaps.append({
                "epoch": self.epoch,
                "last_seq_before": last_seq,
                "lost_at": lost_at,
                "resumed_at": resumed,
                "gap_s": None if lost_at is None else round(resumed - lost_at, 3),
            })  # fmt: skip
            return self.epoch

    def record_frame_size(self, size: tuple[int, int]) -> None:
        with self._lock:
            self.frame_size = size

    def record_captured(self) -> int:
        """One more frame captured; returns how many so far."""
        with self._lock:
            self.captured += 1
            return self.captured

    def record_source_warnings(self, warnings: list[str]) -> None:
        with self._lock:
            self.warnings.extend(warnings)

    def record_inference(self, compute_ms: float | None = None, inferred: int = 0, reset: bool = False) -> None:
        """The inference stage's counts: one push's compute time, frames out, a denoiser reset."""
        with self._lock:
            if compute_ms is not None:
                self.compute_ms.append(compute_ms)
                self._compute_recorded += 1
            self.inferred += inferred
            self.resets += int(reset)

    def compute_since(self, seen: int) -> tuple[list[float], int]:
        """The compute times recorded after the first ``seen`` (of all ever recorded; those the deque
        still holds) and the new total: what a reader that comes back (the cluster driver) has not had."""
        with self._lock:
            fresh = min(self._compute_recorded - seen, len(self.compute_ms))
            return list(self.compute_ms)[len(self.compute_ms) - fresh :], self._compute_recorded

    def record_sent(self, outcome: SendOutcome) -> int:
        """Count one frame's publish outcome; returns how many frames in a row were stale."""
        with self._lock:
            if outcome is SendOutcome.SENT:
                self.published += 1
                self._stale_run = 0
            else:
                self.unsent[outcome.value] = self.unsent.get(outcome.value, 0) + 1
                self._stale_run = self._stale_run + 1 if outcome is SendOutcome.STALE else 0
            return self._stale_run

    def record_adaptation(self, outcome: dict[str, Any]) -> None:
        with self._lock:
            self.adaptations[outcome["outcome"]] = self.adaptations.get(outcome["outcome"], 0) + 1
            self.last_adaptation = outcome

    def set(self, state: StreamStatus, error: str | None = None) -> None:
        """Move to ``state`` (staying is allowed: a new error replaces the old); a move that
        :data:`TRANSITIONS` does not allow is a bug and raises."""
        with self._lock:
            if self.state is not state:
                if state not in TRANSITIONS[self.state]:
                    raise RuntimeError(f"stream {self.stream}: no transition {self.state.value} -> {state.value}")
                log.info(
                    "stream %s: %s -> %s%s", self.stream, self.state.value, state.value, f" ({error})" if error else ""
                )
            self.state = state
            if error is not None:
                self.error = error

    def snapshot(self) -> StreamSnapshot:
        with self._lock:
            return StreamSnapshot(
                stream=self.stream,
                state=self.state,
                error=self.error,
                epoch=self.epoch,
                reconnects=self.reconnects,
                captured=self.captured,
                inferred=self.inferred,
                published=self.published,
                unsent=dict(self.unsent),
                denoiser_resets=self.resets,
                gaps=tuple(dict(g) for g in self.gaps),
                frame_size=self.frame_size,
                connected_once=self.connected_once,
                warnings=tuple(self.warnings),
                adaptations=dict(self.adaptations),
                last_adaptation=self.last_adaptation,
            )


class Stage(abc.ABC):
    """A thread with a stop event; ``run`` does the work and ``shutdown`` always runs after it."""

    # a daemon thread does not hold the process open at exit; one running torch's autograd must
    # not be one (see OnlineAdapter)
    daemon = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"stage {self.name} already started")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=self.daemon)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            self.on_error(exc)
        finally:
            self.shutdown()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """True when the thread has finished (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def on_error(self, exc: BaseException) -> None:
        log.debug("stage %s failed: %s", self.name, exc, exc_info=exc)

    @abc.abstractmethod
    def run(self) -> None: ...

    @abc.abstractmethod
    def shutdown(self) -> None: ...


class CaptureStage(Stage):
    """Reads a source into a ring; reconnects with exponential back-off; stamps captured/queued."""

    def __init__(
        self,
        source: Source,
        config: SourceConfig,
        ring: RingBuffer[FrameRecord],
        state: StreamState,
        first_seq: int = 0,
    ) -> None:
        super().__init__(f"capture-{config.id}")
        self.source = source
        self.config = config
        self.ring = ring
        self.state = state
        self.first_seq = first_seq  # above 0 where a lost process's stream goes on (StreamResume)
        self._seq = first_seq

    def stop(self) -> None:
        super().stop()
        self.source.interrupt()

    def run(self) -> None:
        rc = self.config.reconnect
        attempt = 0
        opened_once = False
        self._seq = self.first_seq
        lost_at: float | None = None
        while not self.stop_event.is_set():
            self.state.set(StreamStatus.RECONNECTING if opened_once or attempt else StreamStatus.CONNECTING)
            try:
                self.source.open()
            except SourceDisconnected as exc:
                self.source.close()
                attempt += 1
                if (not opened_once and rc.fail_on_first_open) or not rc.enabled or (
                    rc.max_attempts and attempt > rc.max_attempts
                ):
                    self.state.set(StreamStatus.FAILED, str(exc))
                    raise
                delay = min(rc.max_s, rc.initial_s * rc.factor ** (attempt - 1))
                never = "" if opened_once else "never connected yet: "
                log.warning("stream %s: %s%s; retry %d in %.1f s", self.config.id, never, exc, attempt, delay)
                self.stop_event.wait(delay)
                continue
            except SourceError as exc:
                self.state.set(StreamStatus.FAILED, str(exc))
                raise
            if opened_once:
                self.state.record_reconnected(self._seq - 1, lost_at)
            opened_once = True
            self.state.record_connected()
            attempt = 0
            self.state.set(StreamStatus.RUNNING)
            try:
                if self._read_loop():  # ended
                    return
            except SourceDisconnected as exc:
                lost_at = time.time()
                log.warning("stream %s: connection lost: %s", self.config.id, exc)
                self.state.set(StreamStatus.RECONNECTING, str(exc))
                self.ring.wake()  # now: the inference stage flushes its look-ahead frames on it
                self.source.close()
                attempt = 0  # the next failed open is retry 1
                if not rc.enabled:
                    self.state.set(StreamStatus.FAILED, str(exc))
                    raise
                self.stop_event.wait(rc.initial_s)
            except SourceError as exc:
                self.state.set(StreamStatus.FAILED, str(exc))
                raise

    def _read_loop(self) -> bool:
        """Read until stopped (False) or the source ended (True); sequence numbers never restart."""
        size: tuple[int, int] | None = None
        limit = self.config.frames
        while not self.stop_event.is_set():
            got = self.source.read()
            if got is None:
                self.state.record_source_warnings(self.source.warnings)
                self.state.set(StreamStatus.ENDED)
                return True
            image, pts = got
            if size is None:
                size = image.shape[:2]
                self.state.record_frame_size(size)
            elif image.shape[:2] != size:
                raise SourceError(
                    f"{self.source.description}: frame size changed mid-stream from "
                    f"{size[1]}x{size[0]} to {image.shape[1]}x{image.shape[0]}"
                )
            t = now_ns()
            record = FrameRecord(self.config.id, self._seq, pts, t, image, self.state.epoch).stamped("captured", t)
            self._seq += 1
            captured = self.state.record_captured()
            record = record.stamped("queued")
            while not self.ring.put(record, timeout=0.1):
                if self.ring.policy is not OverflowPolicy.BLOCK or self.stop_event.is_set():
                    break
            if limit and captured >= limit:
                self.state.set(StreamStatus.ENDED)
                return True
        return False

    def shutdown(self) -> None:
        self.source.close()
        self.ring.close()
        if self.state.state in (StreamStatus.CONNECTING, StreamStatus.RUNNING, StreamStatus.RECONNECTING):
            self.state.set(StreamStatus.ENDED)


class Denoiser(Protocol):
    """What the inference stage drives (``stbn.streaming.StreamingDenoiser``)."""

    lookahead: int

    def push(self, frame: np.ndarray, seq: int, tag: Any = None) -> list[Any]: ...  # each with its tag
    def flush(self) -> list[Any]: ...
    def reset(self) -> None: ...


class FrameObserver(Protocol):
    """Sees every frame the inference stage denoises (``pipeline.adaptation.OnlineAdapter``)."""

    def observe(self, image: np.ndarray) -> None: ...
    def between_frames(self) -> None: ...


class InferenceStage(Stage):
    """One stream's denoiser: ring in, denoised records out (in order); drains and flushes at the end.

    The denoiser sees a contiguous local sequence within an epoch (frames dropped by the ring do not
    reset it); a new epoch (the source reconnected) flushes the look-ahead window and resets it.
    """

    def __init__(
        self, stream: str, ring: RingBuffer[FrameRecord], denoiser: Denoiser, out: RingBuffer[FrameRecord],
        state: StreamState, adapter: FrameObserver | None = None,
    ) -> None:
        super().__init__(f"infer-{stream}")
        self.ring = ring
        self.denoiser = denoiser
        self.out = out
        self.state = state
        self.adapter = adapter
        self._local = 0

    def stop(self) -> None:
        super().stop()
        self.ring.wake()  # it blocks in drain() between frames

    def run(self) -> None:
        epoch: int | None = None
        flushed = False  # the window was already flushed when the source went away
        for record in self.ring.drain(self.stop_event):
            if record is None:
                # the source is gone and the ring is empty: the look-ahead frames go out now, not
                # when (if ever) the source comes back, so nobody receives them seconds late
                # (the capture stage wakes the ring when it loses the source)
                if epoch is not None and not flushed and self.state.state is StreamStatus.RECONNECTING:
                    self._flush_and_reset()
                    flushed = True
                continue
            if epoch is not None and record.epoch != epoch and not flushed:
                self._flush_and_reset()
            epoch, flushed = record.epoch, False
            record = record.stamped("infer_start")
            t0 = time.perf_counter()
            # the record travels with its frame through the look-ahead window and comes back with it
            ready = self.denoiser.push(record.image, self._local, record)
            self.state.record_inference(compute_ms=(time.perf_counter() - t0) * 1e3)
            self._local += 1
            self._emit(ready)
            if self.adapter is not None:
                self.adapter.observe(record.image)
                self.adapter.between_frames()
        if not self.stop_event.is_set():
            self._emit(self.denoiser.flush())

    def _flush_and_reset(self) -> None:
        self._emit(self.denoiser.flush())
        self.denoiser.reset()
        self.state.record_inference(reset=True)

    def _emit(self, ready: list[Any]) -> None:
        for out in ready:
            record = out.tag.denoised_as(out.image, out.sigma).stamped("infer_end")
            self.state.record_inference(inferred=1)
            self.out.put(record)

    def on_error(self, exc: BaseException) -> None:
        self.state.set(StreamStatus.FAILED, f"stream {self.state.stream}: {exc}")

    def shutdown(self) -> None:
        """Nothing to release: the denoiser's window goes with it, the engine is the pipeline's."""


class PublishStage(Stage):
    """Sends denoised records over ZeroMQ (each stream on its topic, with its look-ahead in the
    header), then hands them to the sinks and to ``on_published``."""

    def __init__(
        self, out: RingBuffer[FrameRecord], publisher: ZmqPublisher | None, topics: dict[str, str],
        lookaheads: dict[str, int], sinks: dict[str, list[Sink]],
        on_published: Callable[[FrameRecord, SendOutcome], None],
    ) -> None:  # fmt: skip
        super().__init__("publish")
        self.out = out
        self.publisher = publisher
        self.topics = topics
        self.lookaheads = lookaheads
        self.sinks = sinks
        self.on_published = on_published

    def stop(self) -> None:
        super().stop()
        self.out.wake()

    def run(self) -> None:
        for record in self.out.drain(self.stop_event):
            if record is None:
                continue
            record = record.stamped("published")  # the one place a frame is stamped published
            outcome = SendOutcome.SENT
            if self.publisher is not None:
                outcome = self.publisher.send(
                    self.topics[record.stream], record, lookahead=self.lookaheads[record.stream]
                )
            for sink in self.sinks.get(record.stream, ()):
                sink.write(record)
            self.on_published(record, outcome)


    def shutdown(self) -> None:
        """Nothing to release here: the pipeline closes the sockets and sinks it opened."""
