"""Whole pipelines with real engines, files, ZeroMQ subscribers in other processes and run_pipeline.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest

from pipeline import timecode
from pipeline.runner import Pipeline, PipelineError
from pipeline.sources import Source, SourceDisconnected, SourceError, synthetic_scene

from .conftest import REPO, SubscriberProcess, config, free_port, run_with_subscriber, subprocess_env


def test_file_block_mode_every_frame_once_in_order(checkpoint: Path, video: Path, tmp_path: Path) -> None:
    source = f"{{id: clip, kind: file, uri: '{video}', pace: false, ring_slots: 2}}"
    cfg = config(checkpoint, tmp_path, f"sources=[{source}]",
                 "publish.lossless=true", "publish.wait_subscribers=1", f"outputs.video_dir={tmp_path / 'videos'}")
    assert cfg.sources[0].ring_policy == "block"
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--count", "12", "--idle-timeout", "30",
                            "--timecode")
    report, result = run_with_subscriber(cfg, sub)
    assert [r["seq"] for r in result["frames"]] == list(range(12))
    stream = report["streams"]["clip"]
    assert stream["frames_published"] == 12 and stream["captured"] == 12 and stream["in_order"]
    assert stream["drops"] == {"drop_oldest": 0, "drop_newest": 0}
    # the frames themselves: decode the written file and read the code drawn into each source frame
    with av.open(str(tmp_path / "videos" / "clip.mp4")) as container:
        codes = [timecode.read(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert codes == list(range(12))
    saved = json.loads((tmp_path / "latency.json").read_text())
    assert saved["latency_ms"]["end_to_end"]["count"] == 12
    assert {"p50", "p95", "p99"} <= set(saved["latency_ms"]["inference"])


def test_drop_oldest_under_slow_engine_counts_drops_and_bounds_latency(checkpoint: Path, tmp_path: Path) -> None:
    # 160x120 takes tens of ms per frame on this CPU; the source produces 300 frames/s
    cfg = config(checkpoint, tmp_path, "sources[0].width=160", "sources[0].height=120", "sources[0].fps=300",
                 "sources[0].frames=240", "sources[0].pace=true", "sources[0].ring_slots=2")
    assert cfg.sources[0].ring_policy == "drop_oldest"
    report = Pipeline(cfg).run()
    s = report["streams"]["cam0"]
    assert s["drops"]["drop_oldest"] > 50
    assert s["drops"]["drop_newest"] == 0
    assert s["captured"] == 240
    assert s["frames_published"] + s["drops"]["drop_oldest"] == 240  # every frame is published or counted
    compute_max = s["compute_ms"]["max"]
    # a frame waits at most for the frames ahead of it in the ring plus the look-ahead window
    assert s["latency_ms"]["ring_wait"]["max"] <= 3 * compute_max + 50
    assert s["latency_ms"]["end_to_end"]["max"] <= 6 * compute_max + 100


def test_checkpoint_of_another_preset_is_a_clear_error(other_preset_checkpoint: Path, tmp_path: Path) -> None:
    cfg = config(other_preset_checkpoint, tmp_path)
    with pytest.raises(PipelineError, match="preset"):
        Pipeline(cfg)


def test_frame_size_change_mid_stream_is_a_clear_error(checkpoint: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(6):
        w, h = (64, 48) if k < 3 else (80, 60)
        cv2.imwrite(str(frames / f"{k:03d}.png"), synthetic_scene(k, w, h))
    pattern = frames / "%03d.png"
    cfg = config(checkpoint, tmp_path, f"sources=[{{id: seq, kind: file, uri: '{pattern}', pace: false}}]")
    with pytest.raises(PipelineError, match="frame size changed mid-stream from 64x48 to 80x60"):
        Pipeline(cfg).run()
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["ok"] is False and report["streams"]["seq"]["state"] == "failed"


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _live_pipeline(checkpoint: Path, tmp_path: Path, metrics_port: int, *overrides: str) -> subprocess.Popen:
    """run_pipeline.py on the embedded default, an endless small synthetic stream, /metrics on."""
    sets = ["engine.backend=torch", f"engine.checkpoint={checkpoint}", "engine.threads=1", "sources[0].width=64",
            "sources[0].height=48", "sources[0].frames=0", "sources[0].pace=true", "metrics.enabled=true",
            f"metrics.port={metrics_port}", f"report.dir={tmp_path}", f"outputs.video_dir={tmp_path}",
            *overrides]  # fmt: skip
    cmd = [sys.executable, "run_pipeline.py", "--config", "configs/default.yaml"]
    for assignment in sets:
        cmd += ["--set", assignment]
    return subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _metric_reaches(proc: subprocess.Popen, port: int, series: str, target: float, timeout: float) -> tuple[float, str]:
    """Poll /metrics until ``series`` reaches ``target`` (or the time is up): (value, last page)."""
    deadline = time.monotonic() + timeout
    value, text = 0.0, ""
    while time.monotonic() < deadline and value < target and proc.poll() is None:
        time.sleep(0.3)
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(series):
                value = float(line.split()[-1])
    return value, text


def _interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C to a running pipeline; its stderr once it has stopped."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)[1]


def _kill_if_running(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def test_sigint_leaves_complete_report_and_no_socket_file(checkpoint: Path, tmp_path: Path) -> None:
    ipc = tmp_path / "pub.sock"
    port = free_port()
    proc = _live_pipeline(checkpoint, tmp_path, port, f"publish.endpoint=ipc://{ipc}")
    try:
        published, text = _metric_reaches(proc, port, 'stbn_frames_total{stage="published",stream="cam0"}', 5, 60)
        assert published >= 5, proc.stderr.read() if proc.poll() is not None else "no frames published"
        assert 'stbn_stream_state{state="running",stream="cam0"} 1.0' in text
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read())
        assert health == {"ok": True, "streams": {"cam0": "running"}}
        assert ipc.exists()
        assert _children(proc.pid) == []
        stderr = _interrupt(proc)
    finally:
        _kill_if_running(proc)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["ok"] is True
    s = report["streams"]["cam0"]
    # flushed: everything captured and not dropped came out, including the look-ahead frames
    assert s["frames_published"] + sum(s["drops"].values()) == s["captured"] >= 5
    assert report["latency_ms"]["end_to_end"]["count"] == s["frames_published"]
    assert (tmp_path / "latency.png").stat().st_size > 1000
    assert not ipc.exists()
    with av.open(str(tmp_path / "cam0.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == s["frames_published"]


@pytest.mark.parametrize("case", ["not-video", "missing-checkpoint"])
def test_fatal_error_is_one_line_without_traceback(checkpoint: Path, tmp_path: Path, case: str) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video\n" * 20)
    ckpt = checkpoint if case == "not-video" else tmp_path / "nope.pt"
    cmd = [sys.executable, "run_pipeline.py", "--config", "configs/default.yaml", "--quiet",
           "--set", "engine.backend=torch", "--set", f"engine.checkpoint={ckpt}",
           "--set", f"sources=[{{id: f, kind: file, uri: '{bad}'}}]", "--set", f"report.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == (1 if case == "not-video" else 2)  # a checkpoint path to nothing is a config error
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    expected = "is not a video file" if case == "not-video" else "engine.checkpoint: no file"
    prefix = "run_pipeline: error:" if case == "not-video" else "run_pipeline: config error:"
    assert lines[0].startswith(prefix) and expected in lines[0]


def test_online_adaptation_swaps_or_rolls_back_without_dropping_frames(tmp_path: Path) -> None:
    """adapt.enabled: rounds on the stream's own frames run in the background, every outcome is
    counted (report and /metrics), and block mode still delivers every frame once, in order."""
    shipped = REPO / "weights" / "stbn-cpu-rt.pt"  # its metadata names the loss it was trained with
    cfg = config(
        shipped, tmp_path, "sources[0].width=96", "sources[0].height=64", "sources[0].fps=40",
        "sources[0].frames=100", "sources[0].policy=block", "sources[0].noise_sigma=25", "noise.sigma=25",
        "publish.enabled=false", "adapt.enabled=true", "adapt.every_s=0.2", "adapt.steps=3",
        "adapt.history_frames=10", "adapt.frames=3", "adapt.crop=32", "metrics.enabled=true", "metrics.port=0",
    )  # fmt: skip
    seen: dict[str, str] = {}

    def scrape(pipeline: Pipeline) -> None:
        time.sleep(2.0)
        url = f"http://127.0.0.1:{pipeline.metrics.port}/metrics"
        seen["metrics"] = urllib.request.urlopen(url, timeout=5).read().decode()

    pipeline = Pipeline(cfg)
    report = pipeline.run(on_ready=lambda p: threading.Thread(target=scrape, args=(p,)).start())
    # the round's thread (inside torch) has ended with the run and never was a daemon that the
    # interpreter could kill mid-backward at exit (an abort, exit 134, after the report)
    adapter = pipeline.streams["cam0"].adapter
    assert adapter is not None and not adapter.alive and not adapter.daemon
    stream = report["streams"]["cam0"]
    assert stream["captured"] == 100 and stream["frames_published"] == 100 and stream["in_order"]
    assert stream["drops"] == {"drop_oldest": 0, "drop_newest": 0}
    outcomes = stream["adaptations"]
    assert sum(outcomes.get(k, 0) for k in ("swapped", "rolled_back")) >= 1, outcomes
    assert not {"failed", "unsupported"} & set(outcomes), stream["last_adaptation"]
    assert stream["last_adaptation"]["steps"] == 3
    assert "stbn_adaptations_total" in seen.get("metrics", "")


def test_lossless_delivers_every_frame_to_a_slow_subscriber_at_end_of_stream(checkpoint: Path, tmp_path: Path) -> None:
    """The last frames queued for a slow reader are not lost when the stream ends (the socket
    waits up to publish.drain_timeout_s for them)."""
    cfg = config(checkpoint, tmp_path, "sources[0].frames=16", "sources[0].pace=false", "sources[0].width=64",
                 "sources[0].height=48", "publish.lossless=true", "publish.wait_subscribers=1",
                 "publish.drain_timeout_s=20")  # fmt: skip
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--count", "16", "--idle-timeout", "15",
                            "--slow-ms", "250")  # fmt: skip
    report, result = run_with_subscriber(cfg, sub)
    assert [r["seq"] for r in result["frames"]] == list(range(16))
    assert report["publish"]["sent"] == 16 and report["publish"]["abandoned"] == 0


class _Identity:
    """A denoiser that returns its input at once: the source outruns a stuck subscriber quickly."""

    lookahead = 0

    def push(self, frame: np.ndarray, seq: int, tag: object = None) -> list:
        from stbn.streaming import DenoisedFrame

        return [DenoisedFrame(seq, frame, 0.0, tag=tag)]

    def flush(self) -> list:
        return []

    def reset(self) -> None:
        pass


def test_lossless_with_a_stuck_subscriber_stops_within_the_drain_timeout(
    checkpoint: Path, tmp_path: Path, caplog
) -> None:
    """Ctrl-C (the stop event) with a subscriber that stopped reading: the drain gives up after
    publish.drain_timeout_s, the frames given up on are counted, and the pipeline ends cleanly."""
    cfg = config(checkpoint, tmp_path, "sources[0].width=960", "sources[0].height=540", "sources[0].frames=0",
                 "sources[0].pace=false", "lookahead=0", "publish.lossless=true", "publish.wait_subscribers=1",
                 "publish.drain_timeout_s=2")  # fmt: skip
    stuck = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--slow-ms", "600000", "--rcvhwm", "1")
    stop = threading.Event()
    caplog.set_level("INFO")
    try:
        pipeline = Pipeline(cfg, denoiser_factory=lambda _sid: _Identity())
        threading.Timer(6.0, stop.set).start()  # the subscriber is stuck long before this
        report = pipeline.run(stop)
        took = time.time() - pipeline.started_at
    finally:
        stuck.kill()
    assert report["ok"] and report["publish"]["abandoned"] >= 1, report["publish"]
    assert took < 6 + 2 + 15, took  # the stop, the drain timeout, then the bounded joins and linger
    log = caplog.text
    assert "waiting up to 2 s (publish.drain_timeout_s) for lossless subscribers" in log
    assert "a lossless subscriber stopped reading (its queue is full)" in log
    from pipeline.config import PublishConfig

    assert PublishConfig().drain_timeout_s <= 10.0 - 1.0  # a whole stop within docker stop's grace


class _FlakySource(Source):
    """12 frames, a connection loss, 3 s during which reconnecting fails, then 12 more frames."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.index = 0
        self.lost_at: float | None = None

    def open(self) -> None:
        if self.lost_at is not None and time.time() - self.lost_at < 3.0:
            raise SourceDisconnected("camera unplugged")

    def read(self) -> Any:
        if self.index == 12 and self.lost_at is None:
            self.lost_at = time.time()
            raise SourceDisconnected("camera unplugged")
        if self.index == 24:
            return None
        time.sleep(1 / 30)
        self.index += 1
        return synthetic_scene(self.index, 64, 48), self.index / 30


def test_lookahead_frames_go_out_when_the_source_is_lost_not_when_it_returns(
    checkpoint: Path, tmp_path: Path
) -> None:
    cfg = config(checkpoint, tmp_path, "lookahead=2", "publish.enabled=false", "sources[0].kind=rtsp",
                 "sources[0].uri=rtsp://127.0.0.1:1/x", "sources[0].reconnect.initial_s=0.3",
                 "sources[0].reconnect.max_s=0.5", "sources[0].policy=block")  # fmt: skip
    pipeline = Pipeline(cfg, sources={"cam0": _FlakySource(cfg.sources[0])})
    report = pipeline.run()
    stream = report["streams"]["cam0"]
    assert stream["frames_published"] == 24 and stream["reconnects"] == 1
    rows = pipeline.profiler.rows("cam0")
    age_s = {int(r[0]): (r[5] - r[1]) / 1e9 for r in rows}
    assert max(age_s[s] for s in range(12)) < 1.5, age_s  # not held through the 3 s outage
    assert stream["outage_s"] >= 2.5 and stream["fps"] > 20  # frames/s counts the time connected only


def test_a_truncated_video_file_is_reported_not_accepted_silently(checkpoint: Path, tmp_path: Path, caplog) -> None:
    import logging
    from fractions import Fraction

    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(30))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "10"}
        for k in range(30):
            frame = av.VideoFrame.from_ndarray(synthetic_scene(k, 64, 48), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    half = tmp_path / "half.mp4"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    source = f"{{id: clip, kind: file, uri: '{half}', pace: false}}"
    cfg = config(checkpoint, tmp_path, f"sources=[{source}]", "publish.enabled=false")
    with caplog.at_level(logging.WARNING):
        report = Pipeline(cfg).run()
    stream = report["streams"]["clip"]
    assert 0 < stream["captured"] < 30
    assert len(stream["warnings"]) == 1 and "of the 30 frames its container declares" in stream["warnings"][0]
    assert any("truncated" in r.getMessage() for r in caplog.records)


class _BrokenSource(Source):
    """Five frames, then an unrecoverable error."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.index = 0

    def open(self) -> None:
        pass

    def read(self) -> Any:
        if self.index == 5:
            raise SourceError("the camera's firmware crashed")
        self.index += 1
        time.sleep(1 / 30)
        return synthetic_scene(self.index, 64, 48), self.index / 30


def _healthz_after(delay: float, seen: dict[str, Any]) -> Callable[[Pipeline], None]:
    """An on_ready hook that reads /healthz after ``delay`` s in a thread: status and body into ``seen``."""

    def probe(pipeline: Pipeline) -> None:
        time.sleep(delay)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{pipeline.metrics.port}/healthz", timeout=5) as reply:
                seen["status"], seen["body"] = reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            seen["status"], seen["body"] = exc.code, json.loads(exc.read())

    return lambda pipeline: threading.Thread(target=probe, args=(pipeline,)).start()


def test_one_failed_stream_leaves_the_others_and_healthz_running(checkpoint: Path, tmp_path: Path) -> None:
    good = "{id: good, kind: synthetic, width: 64, height: 48, fps: 30, frames: 60, pace: true, policy: block}"
    bad = "{id: bad, kind: synthetic, width: 64, height: 48}"
    cfg = config(checkpoint, tmp_path, f"sources=[{good}, {bad}]", "publish.enabled=false", "metrics.enabled=true",
                 "metrics.port=0")  # fmt: skip
    seen: dict[str, Any] = {}
    pipeline = Pipeline(cfg, sources={"bad": _BrokenSource(cfg.sources[1])})
    with pytest.raises(PipelineError, match="firmware crashed"):
        pipeline.run(on_ready=_healthz_after(1.0, seen))
    assert seen.get("status") == 503 and seen["body"]["streams"] == {"good": "running", "bad": "failed"}
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["ok"] is False
    assert report["streams"]["good"]["frames_published"] == 60  # the healthy stream ran to its end
    assert report["streams"]["bad"]["state"] == "failed"
    # fail_fast (batch jobs): the first failure stops every stream
    fast = config(checkpoint, tmp_path, f"sources=[{good}, {bad}]", "publish.enabled=false", "fail_fast=true")
    with pytest.raises(PipelineError, match="firmware crashed"):
        Pipeline(fast, sources={"bad": _BrokenSource(fast.sources[1])}).run()
    assert json.loads((tmp_path / "latency.json").read_text())["streams"]["good"]["frames_published"] < 60


def test_the_engine_is_built_before_the_clock_starts_and_logged(checkpoint: Path, tmp_path: Path, caplog) -> None:
    import logging

    cfg = config(checkpoint, tmp_path, "sources[0].width=64", "sources[0].height=48", "sources[0].frames=5",
                 "sources[0].pace=false", "publish.enabled=false")  # fmt: skip
    with caplog.at_level(logging.INFO):
        Pipeline(cfg).run()
    messages = [r.getMessage() for r in caplog.records]
    built = [i for i, m in enumerate(messages) if m.startswith("engine built for cam0 at 64x48")]
    assert len(built) == 1  # once, before the stream, and not again inside it
    assert not any(m.startswith("engine torch built for") for m in messages)


def test_max_age_below_the_pipelines_latency_warns_and_counts_every_frame_unsent(
    checkpoint: Path, tmp_path: Path
) -> None:
    """publish.max_age_ms under the look-ahead's latency: warned at start and while it drops
    everything; /metrics, the progress, the report and the summary say 0 published, N stale."""
    port = free_port()
    proc = _live_pipeline(checkpoint, tmp_path, port, "sources[0].fps=30", "publish.max_age_ms=5",
                          f"publish.endpoint=tcp://127.0.0.1:{free_port()}")  # fmt: skip
    try:
        stale, text = _metric_reaches(proc, port, 'stbn_unsent_total{reason="stale",stream="cam0"}', 35, 90)
        assert stale >= 35, proc.stderr.read() if proc.poll() is not None else "no stale frames counted"
        assert 'stbn_frames_total{stage="published",stream="cam0"} 0.0' in text
        stderr = _interrupt(proc)
    finally:
        _kill_if_running(proc)
    assert proc.returncode == 0, stderr
    assert "publish.max_age_ms=5 is below its look-ahead's own latency" in stderr
    assert "were all older than publish.max_age_ms=5" in stderr
    s = json.loads((tmp_path / "latency.json").read_text())["streams"]["cam0"]
    assert s["published"] == 0 and s["unsent"]["stale"] == s["frames_published"] >= 35
    assert "stale (not sent)" in stderr


class _UnreachableSource(Source):
    """A camera that never answers: every open is refused (the capture stage retries)."""

    def open(self) -> None:
        time.sleep(0.05)
        raise SourceDisconnected("connection refused")

    def read(self) -> Any:
        raise AssertionError("never opened")


def test_healthz_is_not_ok_while_a_stream_has_never_connected(checkpoint: Path, tmp_path: Path) -> None:
    good = "{id: good, kind: synthetic, width: 64, height: 48, fps: 30, frames: 30, pace: true, policy: block}"
    dead = "{id: dead, kind: synthetic, width: 64, height: 48, reconnect: {initial_s: 0.2, max_attempts: 8}}"
    cfg = config(checkpoint, tmp_path, f"sources=[{good}, {dead}]", "publish.enabled=false", "metrics.enabled=true",
                 "metrics.port=0")  # fmt: skip
    seen: dict[str, Any] = {}
    pipeline = Pipeline(cfg, sources={"dead": _UnreachableSource(cfg.sources[1])})
    with pytest.raises(PipelineError):
        pipeline.run(on_ready=_healthz_after(0.5, seen))
    assert seen.get("status") == 503, seen
    assert seen["body"]["never_connected"] == ["dead"] and seen["body"]["streams"]["good"] == "running"


def test_log_lines_say_what_happened_and_only_once(
    checkpoint: Path, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed stream's progress line is not repeated; a wait for subscribers that times out says
    so; an interrupt without lossless delivery does not claim to abandon it."""
    import logging

    import pipeline.runner as runner

    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 0.3)
    good = "{id: good, kind: synthetic, width: 64, height: 48, fps: 30, frames: 45, pace: true, policy: block}"
    bad = "{id: bad, kind: synthetic, width: 64, height: 48}"
    cfg = config(checkpoint, tmp_path, f"sources=[{good}, {bad}]", f"publish.endpoint=tcp://127.0.0.1:{free_port()}",
                 "publish.wait_subscribers=1", "publish.wait_timeout_s=0.3")  # fmt: skip
    caplog.set_level(logging.INFO)
    pipeline = Pipeline(cfg, sources={"bad": _BrokenSource(cfg.sources[1])})
    with pytest.raises(PipelineError, match="firmware crashed"):
        pipeline.run(on_ready=lambda p: p.interrupt("second SIGINT"))
    text = caplog.text
    assert "publish.wait_subscribers: 0 of 1 subscriber(s) after 0.3 s" in text
    assert "lossless delivery abandoned" not in text
    assert sum("stream good: running" in r.getMessage() for r in caplog.records) >= 2  # progress went on
    assert not any("stream bad: failed," in r.getMessage() for r in caplog.records)


def test_a_stream_that_inference_cannot_keep_up_with_is_warned_once(
    checkpoint: Path, tmp_path: Path, caplog, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import pipeline.runner as runner

    monkeypatch.setattr(runner, "KEEP_UP_WINDOW_S", 0.3)
    cfg = config(checkpoint, tmp_path, "sources[0].width=160", "sources[0].height=120", "sources[0].fps=300",
                 "sources[0].frames=600", "sources[0].pace=true", "sources[0].ring_slots=2")  # fmt: skip
    caplog.set_level(logging.INFO)
    report = Pipeline(cfg).run()
    warnings = [r.getMessage() for r in caplog.records if "inference keeps up with" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "of the source's" in warnings[0] and "dropped by the ring" in warnings[0]
    assert report["streams"]["cam0"]["drops"]["drop_oldest"] > 100


def test_a_cameras_noise_goes_to_the_camera_model_on_the_live_path(tmp_path: Path) -> None:
    """A video of camera-noisy frames (demosaiced, white-balanced, gamma-curved, H.264) through the
    live pipeline on ONNX Runtime, blind: the shipped camera model denoises it (its engine exported
    at the first correlated frame) and the output is much closer to what the camera shows of the
    noiseless scene than the input, and closer than the main model on the 2x2 phases gets."""
    from pipeline.sinks import VideoWriter
    from stbn.camera import CameraModel
    from stbn.evaluation.metrics import psnr
    from stbn.training.motion import synthetic_clip
    from stbn.training.photos import HELDOUT_PHOTOS, load_photos

    clean = synthetic_clip(load_photos(HELDOUT_PHOTOS[:1]), 8, (96, 128), np.random.default_rng(2)).frames
    camera = CameraModel(shot=6e-3, read=CameraModel.read_for(6e-3))
    noisy = camera.simulate(clean, np.random.default_rng(5))
    reference = camera.reference(clean)
    video = tmp_path / "camera.mp4"
    writer = VideoWriter(video, fps=25.0)
    for frame in noisy:
        writer.write(frame)
    writer.close()
    source = f"{{id: cam, kind: file, uri: '{video}', pace: false, policy: block}}"
    scores = {}
    for camera_model in ("", "none"):
        out_dir = tmp_path / f"out-{camera_model or 'shipped'}"
        cfg = config(REPO / "weights" / "stbn-cpu-rt.pt", tmp_path, f"sources=[{source}]",
                     "engine.backend=onnxruntime", f"engine.cache_dir={tmp_path / 'cache'}",
                     f"engine.camera_checkpoint={camera_model}", "noise.mode=estimate", "noise.interval=1",
                     "publish.enabled=false", f"outputs.video_dir={out_dir}")  # fmt: skip
        report = Pipeline(cfg).run()
        assert report["streams"]["cam"]["frames_published"] == len(noisy)
        with av.open(str(out_dir / "cam.mp4")) as container:
            out = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        scores[camera_model or "shipped"] = psnr(out / 255.0, reference)
    assert scores["shipped"] > psnr(noisy / 255.0, reference) + 3.0, scores
    assert scores["shipped"] > scores["none"], scores  # 30.67 vs 30.36 dB (input 26.90) when written
