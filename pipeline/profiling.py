"""Latency profiling: per-frame stage times, percentiles, a JSON report and a PNG plot."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.frame import STAGES, FrameRecord

# (name, from stage, to stage)
INTERVALS = (
    ("capture_to_ring", "captured", "queued"),
    ("ring_wait", "queued", "infer_start"),
    ("inference", "infer_start", "infer_end"),  # includes the look-ahead hold of L frames
    ("publish", "infer_end", "published"),
    ("end_to_end", "captured", "published"),
)


def summarize(values_ms: np.ndarray) -> dict[str, float]:
    if values_ms.size == 0:
        return {"count": 0}
    return {
        "count": int(values_ms.size),
        "p50": round(float(np.percentile(values_ms, 50)), 3),
        "p95": round(float(np.percentile(values_ms, 95)), 3),
        "p99": round(float(np.percentile(values_ms, 99)), 3),
        "mean": round(float(values_ms.mean()), 3),
        "max": round(float(values_ms.max()), 3),
    }


class LatencyProfiler:
    """Keeps the stage times of up to ``max_frames`` published frames per stream (preallocated)."""

    def __init__(self, streams: list[str], max_frames: int = 100_000) -> None:
        self.max_frames = max_frames
        self._rows = {s: np.zeros((max_frames, 1 + len(STAGES)), np.int64) for s in streams}
        self._count = dict.fromkeys(streams, 0)
        self.overflow = dict.fromkeys(streams, 0)
        self._lock = threading.Lock()

    def record(self, record: FrameRecord) -> None:
        with self._lock:
            n = self._count[record.stream]
            if n >= self.max_frames:
                self.overflow[record.stream] += 1
                return
            times = record.times()
            self._rows[record.stream][n] = [record.seq, *(times.get(s, 0) for s in STAGES)]
            self._count[record.stream] = n + 1

    def extend(self, stream: str, rows: np.ndarray) -> None:
        """Add another process's rows of ``stream`` (:meth:`rows` there): the cluster's merged report."""
        with self._lock:
            n = self._count[stream]
            take = min(len(rows), self.max_frames - n)
            self._rows[stream][n : n + take] = rows[:take]
            self._count[stream] = n + take
            self.overflow[stream] += len(rows) - take

    def rows(self, stream: str, start: int = 0) -> np.ndarray:
        """(frames, 1 + stages) sequence number and stage times (ns) of the published frames from
        the ``start``-th kept one on."""
        with self._lock:
            return self._rows[stream][start : self._count[stream]].copy()

    def intervals_ms(self, stream: str) -> dict[str, np.ndarray]:
        rows = self.rows(stream)
        col = {s: 1 + i for i, s in enumerate(STAGES)}
        return {name: (rows[:, col[b]] - rows[:, col[a]]) / 1e6 for name, a, b in INTERVALS}

    def report(self, lookaheads: dict[str, int], stream_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Per stream and over all: latency percentiles per interval, frames/s while connected, the
        look-ahead (frames, and ms at the source's frame interval)."""
        streams: dict[str, Any] = {}
        all_intervals: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in INTERVALS}
        total_frames = 0
        spans = []
        for stream, info in stream_info.items():
            rows = self.rows(stream)
            iv = self.intervals_ms(stream)
            for name, values in iv.items():
                all_intervals[name].append(values)
            n = rows.shape[0]
            total_frames += n
            captured = np.sort(rows[:, 1]) if n else rows[:, 1]
            interval_ms = float(np.median(np.diff(captured)) / 1e6) if n > 1 else None
            span_s = (rows[:, 5].max() - rows[:, 1].min()) / 1e9 if n > 1 else 0.0
            # frames/s while connected: the outages (reconnect gaps) are not time the stream ran
            outage_s = sum(g.get("gap_s") or 0.0 for g in info.get("gaps", []))
            live_s = span_s - outage_s if span_s - outage_s > 0 else span_s
            if n > 1:
                spans.append((rows[:, 1].min(), rows[:, 5].max()))
            seqs = rows[:, 0]
            compute = np.asarray(info.pop("compute_ms", []), np.float64)
            streams[stream] = {
                **info,
                "frames_published": n,
                "in_order": bool(np.all(np.diff(seqs) > 0)) if n > 1 else True,
                "fps": round((n - 1) / live_s, 3) if live_s > 0 else None,
                "outage_s": round(outage_s, 3),
                "source_frame_interval_ms": round(interval_ms, 3) if interval_ms else None,
                "lookahead_frames": lookaheads[stream],
                "lookahead_ms": round(lookaheads[stream] * interval_ms, 3) if interval_ms else None,
                "compute_ms": summarize(compute),
                "latency_ms": {name: summarize(v) for name, v in iv.items()},
            }
        total_span = (max(b for _, b in spans) - min(a for a, _ in spans)) / 1e9 if spans else 0.0
        return {
            "stages": list(STAGES),
            "intervals": [{"name": n, "from": a, "to": b} for n, a, b in INTERVALS],
            "frames_published": total_frames,
            "fps": round(total_frames / total_span, 3) if total_span > 0 else None,
            "lookahead_frames": max(lookaheads.values(), default=0),
            "latency_ms": {
                name: summarize(np.concatenate(v) if v else np.zeros(0)) for name, v in all_intervals.items()
            },
            "streams": streams,
        }

    def plot(self, path: str | Path, title: str = "pipeline latency", gaps: dict[str, list[int]] | None = None) -> None:
        """Write :meth:`figure` as a PNG."""
        import matplotlib.pyplot as plt

        fig = self.figure(title, gaps)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
        plt.close(fig)

    def figure(self, title: str = "pipeline latency", gaps: dict[str, list[int]] | None = None) -> Any:
        """Per-stage latency over time on a log axis (a warm-up or outage spike does not flatten the
        steady trace), end-to-end p50/p95 lines, reconnect markers at ``gaps[stream]`` (the last seq
        before each outage), and a log-binned histogram; legends outside the data."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_t, ax_h) = plt.subplots(2, 1, figsize=(11, 7.5))
        all_e2e = []
        for stream in self._rows:
            iv = self.intervals_ms(stream)
            x = self.rows(stream)[:, 0]
            for name, values in iv.items():
                ax_t.plot(x, np.maximum(values, 1e-2), label=f"{stream}: {name}", linewidth=1)
            for seq in (gaps or {}).get(stream, []):
                ax_t.axvline(seq + 0.5, color="red", linestyle=":", linewidth=1)
            if iv["end_to_end"].size:
                all_e2e.append(iv["end_to_end"])
        if all_e2e:
            e2e = np.concatenate(all_e2e)
            for q, style in ((50, "--"), (95, "-.")):
                value = float(np.percentile(e2e, q))
                ax_t.axhline(
                    value, color="black", linestyle=style, linewidth=0.8, label=f"end to end p{q} {value:.0f} ms"
                )
            low, high = max(float(e2e.min()), 0.1), max(float(e2e.max()), 1.0)
            bins = np.geomspace(low, high * 1.01, 40) if high > low else 10
            ax_h.hist(e2e, bins=bins, alpha=0.7, label="end to end, all streams")
            ax_h.set_xscale("log")
            for q in (50, 95, 99):
                ax_h.axvline(float(np.percentile(e2e, q)), color="black", linestyle=":", linewidth=0.8)
        ax_t.set_yscale("log")
        ax_t.set_xlabel("frame (seq); red dotted lines: reconnects")
        ax_t.set_ylabel("ms (log)")
        ax_t.set_title(f"{title}: per-stage latency over time")
        if ax_t.lines:
            ax_t.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax_h.set_xlabel("end-to-end latency (ms, log; dotted: p50, p95, p99)")
        ax_h.set_ylabel("frames")
        if ax_h.patches:
            ax_h.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        return fig


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(path)
