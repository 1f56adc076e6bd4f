"""``stbn denoise IN OUT --cluster ...``: a batch of videos on Ray, one task per video.

Workers are actors, each holding the model loaded once, fed one video at a time (the batch's tasks);
progress over the whole batch (files and frames) comes back through a Ray queue. Resumable: an
output that exists is skipped, and :func:`pipeline.denoise_file.denoise_file` writes under a
``.partial`` name until a file is complete, so a killed batch never leaves a partial output under
its final name. A file that fails is reported and the others finish; a table sums up at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.connect import ClusterAddress, ClusterUnavailable, connected, first_line
from pipeline.denoise_file import (
    DenoiseError,
    DenoiseOptions,
    Stage,
    denoise_file,
    load_options_checkpoint,
    options_from_args,
)
from stbn.io import VIDEO_SUFFIXES

log = logging.getLogger("cluster")


class BatchError(ValueError):
    """A batch that cannot start (no videos, clashing output names, an option that needs one file)."""


class Outcome(enum.Enum):
    DONE = "done"
    SKIPPED = "skipped"  # its output exists (a resumed batch)
    FAILED = "failed"


@dataclass(frozen=True)
class FileResult:
    input: str
    output: str
    outcome: Outcome
    frames: int = 0
    seconds: float = 0.0
    node: str = ""
    error: str = ""


def batch_inputs(source: Path) -> list[Path]:
    """The videos of a folder (by suffix, sorted) or of a list file (one path per line, relative to
    the list's folder; blank lines and # comments skipped)."""
    if source.is_dir():
        videos = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise BatchError(f"{source}: no videos ({', '.join(VIDEO_SUFFIXES)})")
        return videos
    if not source.is_file():
        raise BatchError(f"{source}: no such folder or list file")
    lines = [line.strip() for line in source.read_text().splitlines()]
    videos = [(source.parent / line).resolve() for line in lines if line and not line.startswith("#")]
    if not videos:
        raise BatchError(f"{source}: the list names no videos")
    return videos


def batch_outputs(inputs: list[Path], out_dir: Path) -> list[Path]:
    """``out_dir/<input name>`` for each input; two inputs of one name would write one file."""
    outputs = [out_dir / p.name for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, outputs):
        if dst in seen:
            raise BatchError(f"{seen[dst]} and {src} would both be written to {dst}: rename one")
        seen[dst] = src
    return outputs


class _QueueBar:
    """The tqdm-like bar denoise_file asks for, reporting frames to the driver's queue."""

    def __init__(self, queue: Any, name: str, stage: Stage, every: int = 8) -> None:
        self.queue, self.name, self.stage, self.every = queue, name, stage, every
        self._pending = 0

    def update(self, n: int = 1) -> None:
        self._pending += n
        if self._pending >= self.every:
            self.flush()

    def flush(self) -> None:
        if self._pending and self.stage is Stage.DENOISE:
            self.queue.put((self.name, self._pending))
        self._pending = 0

    def close(self) -> None:
        self.flush()


class BatchWorker:
    """One worker of a batch: the model loaded once, then one video per call (wrapped by ray.remote)."""

    def __init__(self, options: DenoiseOptions, progress: Any) -> None:
        import ray

        self.options = options
        self.progress = progress
        self.node = ray.util.get_node_ip_address()
        self.checkpoint = load_options_checkpoint(options)  # a bad checkpoint fails every worker at once

    def denoise(self, input_path: str, output_path: str) -> FileResult:
        start = time.time()

        def bar(stage: Stage, _total: int | None) -> _QueueBar:
            return _QueueBar(self.progress, input_path, stage)

        try:
            summary = denoise_file(Path(input_path), Path(output_path), self.options, bar, self.checkpoint)
        except (DenoiseError, ValueError, OSError) as exc:
            return FileResult(input_path, output_path, Outcome.FAILED, 0, time.time() - start, self.node,
                              f"{exc.__class__.__name__}: {exc}")  # fmt: skip
        return FileResult(input_path, output_path, Outcome.DONE, summary.frames, summary.seconds, self.node)


def run_batch(args: argparse.Namespace) -> int:
    """The batch behind ``stbn denoise IN OUT --cluster ADDRESS``."""
    prog = "stbn denoise"
    try:
        if args.compare or args.save_adapted:
            raise BatchError("--compare and --save-adapted name one file: not available for a batch")
        ClusterAddress.parse(args.cluster)
        options = options_from_args(args)
        # absolute: a worker on another node (which must see the same files) has another directory
        inputs = [p.resolve() for p in batch_inputs(args.input)]
        outputs = batch_outputs(inputs, args.output.resolve())
    except (BatchError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    todo = [(i, o) for i, o in zip(inputs, outputs) if args.force or not o.exists()]
    skipped = [FileResult(str(i), str(o), Outcome.SKIPPED) for i, o in zip(inputs, outputs) if (i, o) not in todo]
    if skipped:
        print(f"{prog}: {len(skipped)} of {len(inputs)} outputs exist and are skipped (--force redoes them)",
              file=sys.stderr)  # fmt: skip
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops like Ctrl-C
    try:
        with connected(args.cluster) as ray:
            results = _run(ray, todo, options, args)
    except ClusterUnavailable as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished outputs are kept, partial ones removed: run it again to go on",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = skipped + results
    print(summary_table(results))
    return 1 if any(r.outcome is Outcome.FAILED for r in results) else 0


def _run(
    ray: Any, todo: list[tuple[Path, Path]], options: DenoiseOptions, args: argparse.Namespace
) -> list[FileResult]:
    from ray.util.queue import Queue
    from tqdm import tqdm

    if not todo:
        return []
    cpus = max(1, options.threads)
    capacity = int(ray.cluster_resources().get("CPU", 1) // cpus) or 1
    workers_n = min(len(todo), capacity)
    progress = Queue()
    worker_class = ray.remote(num_cpus=cpus, max_restarts=0)(BatchWorker)
    # one thread per worker unless asked: the workers share the cluster's cores
    worker_options = options if options.threads else dataclasses.replace(options, threads=1)
    workers = [worker_class.remote(worker_options, progress) for _ in range(workers_n)]
    log.info("batch: %d video(s) on %d worker(s) of %d CPU(s) each", len(todo), workers_n, cpus)
    frames_bar = None if args.no_progress else tqdm(desc="frames", unit="frame", dynamic_ncols=True)
    files_bar = None if args.no_progress else tqdm(total=len(todo), desc="files", unit="file", dynamic_ncols=True)
    queue = list(todo)
    running: dict[Any, tuple[Any, Path, Path]] = {}
    results: list[FileResult] = []

    def submit(worker: Any) -> None:
        src, dst = queue.pop(0)
        running[worker.denoise.remote(str(src), str(dst))] = (worker, src, dst)

    for worker in workers:
        if queue:
            submit(worker)
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            while not progress.empty():
                _, n = progress.get_nowait()
                if frames_bar is not None:
                    frames_bar.update(n)
            for ref in ready:
                worker, src, dst = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker (or its node) died, or failed to start
                    result = FileResult(str(src), str(dst), Outcome.FAILED, error=first_line(exc))
                    worker = worker_class.remote(worker_options, progress)  # a fresh one for the rest
                    workers.append(worker)
                results.append(result)
                if files_bar is not None:
                    files_bar.update(1)
                if result.outcome is Outcome.FAILED:
                    log.warning("batch: %s failed: %s", src, result.error)
                if queue:
                    submit(worker)
    finally:
        for bar in (frames_bar, files_bar):
            if bar is not None:
                bar.close()
        for worker in workers:
            ray.kill(worker)
    return results


def summary_table(results: list[FileResult]) -> str:
    """One line per file, then the totals."""
    rows = [("file", "outcome", "frames", "s", "frames/s", "node", "error")]
    for r in results:
        fps = f"{r.frames / r.seconds:.1f}" if r.seconds > 0 and r.frames else ""
        rows.append((Path(r.input).name, r.outcome.value, str(r.frames or ""), f"{r.seconds:.1f}" if r.seconds else "",
                     fps, r.node, r.error))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + ("  " + row[-1] if row[-1] else "") for row in rows]
    counts = {o: sum(r.outcome is o for r in results) for o in Outcome}
    frames = sum(r.frames for r in results)
    lines.append(f"{len(results)} file(s): {counts[Outcome.DONE]} done, {counts[Outcome.SKIPPED]} skipped, "
                 f"{counts[Outcome.FAILED]} failed; {frames} frames denoised")  # fmt: skip
    return "\n".join(lines)
