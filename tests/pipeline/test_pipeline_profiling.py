"""The latency report and plot: percentiles per stage, frames/s without outages, and a plot whose
spikes do not flatten the steady trace, with reconnect markers and percentile lines."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

from pipeline.frame import STAGES, FrameRecord
from pipeline.profiling import LatencyProfiler

MS = 1_000_000


def _record(stream: str, seq: int, start_ms: float, end_to_end_ms: float) -> FrameRecord:
    t0 = int(start_ms * MS)
    record = FrameRecord(stream, seq, None, t0, np.zeros((1, 1, 3), np.uint8))
    # captured, queued, infer_start, infer_end, published: the inference takes most of the time
    offsets = (0.0, 0.5, 1.0, end_to_end_ms - 1.0, end_to_end_ms)
    for stage, offset in zip(STAGES, offsets, strict=True):
        record = record.stamped(stage, t0 + int(offset * MS))
    return record


def _profiler() -> LatencyProfiler:
    profiler = LatencyProfiler(["cam"], max_frames=100)
    for seq in range(40):
        # 100 ms per frame; frame 20 comes after a 5 s outage and carries a 1.5 s latency spike
        start = seq * 100.0 + (5000.0 if seq >= 20 else 0.0)
        profiler.record(_record("cam", seq, start, 1500.0 if seq == 20 else 50.0))
    return profiler


def test_report_gives_percentiles_and_frames_per_second_while_connected() -> None:
    report = _profiler().report({"cam": 2}, {"cam": {"gaps": [{"gap_s": 5.0}]}})
    stream = report["streams"]["cam"]
    assert stream["latency_ms"]["end_to_end"]["p50"] == 50.0
    assert stream["latency_ms"]["end_to_end"]["max"] == 1500.0
    assert stream["outage_s"] == 5.0 and stream["lookahead_frames"] == 2 and stream["lookahead_ms"] == 200.0
    assert 9.0 < stream["fps"] < 11.0  # 39 intervals over ~3.9 s of connected time, not 8.9 s


def test_plot_keeps_the_steady_trace_readable_and_marks_reconnects(tmp_path: Path) -> None:
    profiler = _profiler()
    fig = profiler.figure(gaps={"cam": [19]})
    try:
        timeline, histogram = fig.axes[:2]
        assert timeline.get_yscale() == "log" and histogram.get_xscale() == "log"
        low, high = timeline.get_ylim()
        assert low < 50.0 and high > 1500.0  # both the steady 50 ms and the spike are on the axis
        markers = [line for line in timeline.lines if list(line.get_xdata()) == [19.5, 19.5]]
        assert len(markers) == 1  # the reconnect after seq 19
        labels = [text.get_text() for text in timeline.get_legend().get_texts()]
        assert "end to end p50 50 ms" in labels and any(label.startswith("end to end p95") for label in labels)
    finally:
        plt.close(fig)
    path = tmp_path / "out" / "latency.png"
    profiler.plot(path, gaps={"cam": [19]})
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 500 and image.std() > 10
