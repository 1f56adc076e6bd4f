"""``stbn run`` (and its alias ``python run_pipeline.py``): the live denoising pipeline on a config
(default: the embedded one, ``configs/default.yaml``, found from any directory) with ``--set k=v``
overrides.

SIGINT/SIGTERM stop capture, drain the rings, flush the look-ahead frames, close the sockets,
write the report and exit 0. A fatal error prints one line on stderr and exits 1 (2 for a bad config).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.config import ConfigError, PipelineConfig, default_config_path, load_config
from stbn.weights import WeightsNotFound, resolve_checkpoint


def _quiet_native_libraries(level: int) -> None:
    """OpenCV and FFmpeg print their own warnings on stderr (a decoder's 'corrupt frame' during a
    reconnect, ...); the pipeline reports what matters in its log, so they speak only at DEBUG."""
    if level <= logging.DEBUG:
        return
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        import av.logging

        av.logging.set_level(av.logging.ERROR)
    except ImportError:
        pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: the embedded configs/default.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted key, e.g. sources[0].uri=... or engine.backend=torch)")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--view", action="store_true",
                        help="serve the live viewer (noisy beside denoised per stream) in the browser; viewer.*")


def configure(args: argparse.Namespace, prog: str) -> PipelineConfig | None:
    """The run's config (file, ``--set``, ``--view``) with logging set up; None after printing a
    config error (exit status 2)."""
    try:
        path = args.config or default_config_path()
        config = load_config(path, [*args.overrides, *(["viewer.enabled=true"] if args.view else [])])
        checkpoint = resolve_checkpoint(config.engine.checkpoint, config.engine.preset)
    except (ConfigError, WeightsNotFound) as exc:
        print(f"{prog}: config error: {exc}", file=sys.stderr)
        return None
    if not checkpoint.is_file():  # a value that points at nothing is a config error
        print(f"{prog}: config error: engine.checkpoint: no file {config.engine.checkpoint}", file=sys.stderr)
        return None
    level = logging.WARNING if args.quiet else getattr(logging, config.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _quiet_native_libraries(level)
    return config


def stop_on_signals(interrupt: Callable[[str], None]) -> threading.Event:
    """An event set by the first SIGINT/SIGTERM; a second one calls ``interrupt`` (stop waiting)."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():  # a second signal: stop waiting for anyone
            interrupt(f"second {name}")
            return
        logging.getLogger("pipeline").info(
            "signal %s: stopping (drain, flush, report); a second signal stops waiting for subscribers", name
        )
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop


def run(args: argparse.Namespace, prog: str = "stbn run") -> int:
    config = configure(args, prog)
    if config is None:
        return 2
    return run_config(config, prog)


def run_config(config: PipelineConfig, prog: str) -> int:
    """Run one process's pipeline until its sources end or a signal; the summary line on stderr."""
    from pipeline.runner import Pipeline, PipelineError

    pipeline: Pipeline | None = None

    def interrupt(reason: str) -> None:
        if pipeline is not None:
            pipeline.interrupt(reason)

    stop = stop_on_signals(interrupt)
    try:
        pipeline = Pipeline(config)
        report = pipeline.run(stop)
    except PipelineError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. an engine that rejects its config
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    where = f"{config.report.dir}/{config.report.name}.json"
    print(f"{prog}: {RunSummary.of(report).line()}; report in {where}", file=sys.stderr)
    return 0


@dataclass(frozen=True)
class RunSummary:
    """What a run's report (the JSON document a pipeline or cluster run writes) says in one line."""

    frames_published: int
    fps: float | None
    dropped: int
    reconnects: int
    unsent: dict[str, int]  # reason -> frames denoised but not sent to subscribers
    end_to_end_p50_ms: float | None
    end_to_end_p95_ms: float | None

    @classmethod
    def of(cls, report: dict[str, Any]) -> RunSummary:
        streams = report.get("streams", {}).values()
        unsent: dict[str, int] = {}
        for stream_report in streams:
            for reason, n in stream_report.get("unsent", {}).items():
                unsent[reason] = unsent.get(reason, 0) + n
        e2e = report.get("latency_ms", {}).get("end_to_end", {})
        return cls(
            frames_published=report.get("frames_published", 0),
            fps=report.get("fps") or None,
            dropped=sum(sum(s.get("drops", {}).values()) for s in streams),
            reconnects=sum(s.get("reconnects", 0) for s in streams),
            unsent=unsent,
            end_to_end_p50_ms=e2e.get("p50"),
            end_to_end_p95_ms=e2e.get("p95"),
        )

    def line(self) -> str:
        """Frames, rate, drops, reconnects and end-to-end latency."""
        not_sent = "".join(f", {n} {reason} (not sent)" for reason, n in sorted(self.unsent.items()))
        rate = f"{self.fps} frames/s" if self.fps else "no frames"
        latency = (f"end-to-end p50 {self.end_to_end_p50_ms} ms p95 {self.end_to_end_p95_ms} ms"
                   if self.end_to_end_p50_ms is not None else "no latency figures")  # fmt: skip
        return (f"{self.frames_published} frames{not_sent}, {rate}, {self.dropped} dropped, {self.reconnects} "
                f"reconnects, {latency}")  # fmt: skip
