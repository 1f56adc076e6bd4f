"""RTSP ingest from a real GstRtspServer (subprocess on 127.0.0.1): ingest, reconnect, several streams,
bad paths, glass-to-glass from the timestamp drawn at the source."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.runner import Pipeline, PipelineError

from .conftest import RtspServerProcess, SubscriberProcess, config, run_with_subscriber

pytest.importorskip("gi")


def _rtsp_source(sid: str, url: str, **extra: Any) -> str:
    fields = {"id": sid, "kind": "rtsp", "uri": url, "read_timeout_s": 1.0, "open_timeout_s": 5.0, **extra}
    items = [f"{k}: '{v}'" if isinstance(v, str) and not v.startswith("{") else f"{k}: {v}" for k, v in fields.items()]
    return "{" + ", ".join(items) + "}"


def test_rtsp_ingest_denoise_publish_in_order(checkpoint: Path, tmp_path: Path,
                                             rtsp_server: RtspServerProcess) -> None:
    cfg = config(checkpoint, tmp_path, f"sources=[{_rtsp_source('door', rtsp_server.url(), frames=20)}]",
                 "publish.lossless=true", "publish.wait_subscribers=1")
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--count", "20", "--idle-timeout", "20",
                            "--timecode")
    report, result = run_with_subscriber(cfg, sub)
    seqs = [r["seq"] for r in result["frames"]]
    assert len(seqs) == 20 and all(b > a for a, b in zip(seqs, seqs[1:], strict=False))
    assert report["streams"]["door"]["frames_published"] == 20
    # glass to glass: the capture time drawn at the server, read back from the denoised frame
    g2g = result["summary"]["glass_to_glass_ms"]
    assert g2g["count"] >= 15 and 0 < g2g["p50"] < 2000


def test_rtsp_reconnect_after_server_restart(checkpoint: Path, tmp_path: Path,
                                            rtsp_server: RtspServerProcess) -> None:
    reconnect = "{enabled: true, initial_s: 0.2, max_s: 1.0, factor: 2.0}"
    cfg = config(checkpoint, tmp_path, f"sources=[{_rtsp_source('door', rtsp_server.url(), reconnect=reconnect)}]")
    pipeline = Pipeline(cfg)
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(pipeline.run(stop)))
    thread.start()
    state = pipeline.streams["door"].state
    try:
        deadline = time.monotonic() + 30
        while state.published < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.published >= 10
        rtsp_server.stop()  # the server dies mid-stream ...
        deadline = time.monotonic() + 15
        while state.state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.state == "reconnecting"
        time.sleep(1.0)
        rtsp_server.start()  # ... and comes back on the same port
        before = state.published
        deadline = time.monotonic() + 30
        while (state.state != "running" or state.published < before + 10) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.state == "running" and state.published >= before + 10
    finally:
        stop.set()
        thread.join(60)
    s = result["streams"]["door"]
    assert s["reconnects"] == 1 and s["epoch"] == 1
    assert s["denoiser_resets"] == 1  # the streaming state was reset for the new connection
    gap = s["gaps"][0]
    assert gap["epoch"] == 1 and gap["gap_s"] >= 1.0
    assert result["ok"], result["error"]
    assert s["in_order"], s
    assert s["error"] is None  # the error that caused the reconnect does not outlive it


def test_several_streams_in_one_process_with_their_own_topics(checkpoint: Path, tmp_path: Path,
                                                              rtsp_server: RtspServerProcess) -> None:
    sources = ", ".join([
        _rtsp_source("north", rtsp_server.url(), frames=12),
        _rtsp_source("south", rtsp_server.url(), frames=12),
        "{id: synth, kind: synthetic, width: 64, height: 48, frames: 12, pace: false}",
    ])
    cfg = config(checkpoint, tmp_path, f"sources=[{sources}]", "publish.lossless=true", "publish.wait_subscribers=1")
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--topic", "south", "--count", "12",
                            "--idle-timeout", "20")
    report, result = run_with_subscriber(cfg, sub)
    for sid in ("north", "south", "synth"):
        s = report["streams"][sid]
        assert s["frames_published"] == 12 and s["in_order"] and s["state"] == "ended"
    assert {r["stream"] for r in result["frames"]} == {"south"}  # topic filtering
    assert [r["seq"] for r in result["frames"]] == list(range(12))


def test_rtsp_unknown_path_is_a_clear_error(checkpoint: Path, tmp_path: Path, rtsp_server: RtspServerProcess) -> None:
    url = rtsp_server.url("/no-such-mount")
    cfg = config(checkpoint, tmp_path, f"sources=[{_rtsp_source('door', url)}]")
    with pytest.raises(PipelineError, match=r"rtsp source 'door' \(rtsp://127\.0\.0\.1:\d+/no-such-mount\): .*"):
        Pipeline(cfg).run()


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_rtsp_fallback_backends(checkpoint: Path, tmp_path: Path, rtsp_server: RtspServerProcess,
                                backend: str) -> None:
    cfg = config(checkpoint, tmp_path,
                 f"sources=[{_rtsp_source('door', rtsp_server.url(), frames=6, backend=backend, read_timeout_s=5.0)}]")
    report = Pipeline(cfg).run()
    s = report["streams"]["door"]
    assert s["captured"] == 6 and s["frames_published"] + s["drops"]["drop_oldest"] == 6
    assert s["frames_published"] >= 3 and s["in_order"]


def test_rtsp_with_a_fresh_onnxruntime_export(checkpoint: Path, tmp_path: Path, rtsp_server: RtspServerProcess) -> None:
    """The ONNX export runs after GStreamer's RTSP elements have run in this process (the
    TorchScript tracer used to abort the whole process then)."""
    cfg = config(checkpoint, tmp_path, f"sources=[{_rtsp_source('door', rtsp_server.url(), frames=6)}]",
                 "engine.backend=onnxruntime", f"engine.cache_dir={tmp_path / 'engines'}")
    report = Pipeline(cfg).run()
    assert report["streams"]["door"]["frames_published"] >= 3
    assert len(list((tmp_path / "engines").rglob("*.onnx"))) >= 6


def _rtsp_viewer(url: str, within_s: float = 30.0) -> Any:
    """An RTSP client source opened on ``url``, retried while the mount is not serving yet."""
    from pipeline.config import SourceConfig
    from pipeline.sources import SourceDisconnected, make_source

    client = make_source(SourceConfig(id="viewer", kind="rtsp", uri=url, open_timeout_s=3.0))
    deadline = time.monotonic() + within_s
    while True:
        try:
            client.open()
            return client
        except SourceDisconnected:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_denoised_stream_is_re_served_over_rtsp(checkpoint: Path, tmp_path: Path) -> None:
    from pipeline import timecode

    from .conftest import free_port

    port = free_port()
    cfg = config(checkpoint, tmp_path, "sources[0].width=64", "sources[0].height=48", "sources[0].fps=15",
                 "sources[0].pace=true", "sources[0].frames=0", "outputs.rtsp.enabled=true",
                 f"outputs.rtsp.port={port}")
    pipeline = Pipeline(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=pipeline.run, args=(stop,))
    thread.start()
    codes = []
    client = _rtsp_viewer(f"rtsp://127.0.0.1:{port}/cam0")
    try:
        for _ in range(8):
            image, _pts = client.read()
            assert image.shape == (48, 64, 3)
            codes.append(timecode.read(image))
    finally:
        client.close()
        stop.set()
        thread.join(60)
    # the drawn capture times come back through denoise -> H.264 -> RTSP, increasing
    read = [c for c in codes if c is not None]
    assert len(read) >= 6 and read == sorted(read)


def test_reconnecting_state_in_metrics_then_failed_after_max_attempts(checkpoint: Path, tmp_path: Path) -> None:
    import urllib.request

    from .conftest import free_port

    port, metrics_port = free_port(), free_port()
    reconnect = "{initial_s: 0.2, max_s: 0.4, factor: 2.0, max_attempts: 4, fail_on_first_open: false}"
    url = f"rtsp://127.0.0.1:{port}/nothing-listens-here"
    cfg = config(checkpoint, tmp_path, f"sources=[{_rtsp_source('door', url, reconnect=reconnect)}]",
                 "metrics.enabled=true", f"metrics.port={metrics_port}")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Pipeline(cfg).run()
        except PipelineError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    seen = ""
    deadline = time.monotonic() + 20
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).read().decode()
        except OSError:
            time.sleep(0.05)
            continue
        if 'stbn_stream_state{state="reconnecting",stream="door"} 1.0' in text:
            seen = text
            break
        time.sleep(0.05)
    thread.join(30)
    assert seen, "the reconnecting state never showed in /metrics"
    assert len(errors) == 1 and "nothing-listens-here" in str(errors[0])
    report = (tmp_path / "latency.json").read_text()
    assert '"state": "failed"' in report


def test_a_stream_that_never_connected_is_not_reported_ok(checkpoint: Path, tmp_path: Path, caplog) -> None:
    """A mistyped URL retried forever (the shipped rtsp.yaml's setting) says so while retrying, and
    stopping it is a failure naming the stream, not ``ok: true``."""
    import json
    import logging

    from .conftest import free_port

    reconnect = "{initial_s: 0.2, max_s: 0.4, factor: 2.0, fail_on_first_open: false}"
    url = f"rtsp://127.0.0.1:{free_port()}/mistyped"
    cfg = config(checkpoint, tmp_path, f"sources=[{_rtsp_source('door', url, reconnect=reconnect)}]")
    stop = threading.Event()
    threading.Timer(2.0, stop.set).start()
    with caplog.at_level(logging.WARNING), pytest.raises(PipelineError, match="door never connected"):
        Pipeline(cfg).run(stop)
    assert any("never connected yet" in r.getMessage() for r in caplog.records)
    assert any("cannot connect" in r.getMessage() for r in caplog.records)  # not GStreamer's "resource" words
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["ok"] is False and report["streams"]["door"]["connected_once"] is False


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--width", "0"], "--width and --height"), (["--mount", "test"], "--mount must start with '/'"),
     (["--noise", "-5"], "--noise in 0..255")],
)  # fmt: skip
def test_the_test_rtsp_server_names_bad_arguments(args: list[str], named: str) -> None:
    import subprocess
    import sys

    from .conftest import REPO, subprocess_env

    done = subprocess.run([sys.executable, "scripts/rtsp_test_server.py", *args], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr


def test_a_resolution_change_restarts_the_rtsp_mount_and_the_file_segment(tmp_path: Path, caplog) -> None:
    """A reconnect that brings another frame size (#24): the RTSP re-serve remounts (a new client
    gets the new size), the file sink starts a new segment; both logged, nothing rescaled."""
    import av

    from pipeline.config import RtspOutConfig
    from pipeline.frame import FrameRecord
    from pipeline.rtsp_server import RtspSink
    from pipeline.sinks import VideoFileSink

    from .conftest import free_port

    port = free_port()
    rtsp = RtspSink(RtspOutConfig(enabled=True, port=port), {"cam0": 15.0})
    rtsp.start()
    files = VideoFileSink(tmp_path / "cam0.mp4", 15.0)
    stop = threading.Event()
    size = {"now": (48, 64)}

    def feed() -> None:
        seq = 0
        while not stop.is_set():
            h, w = size["now"]
            record = FrameRecord("cam0", seq, None, 0, np.full((h, w, 3), (seq * 7) % 255, np.uint8))
            rtsp.write("cam0", record)
            files.write(record)
            seq += 1
            time.sleep(1 / 15)

    def first_frame() -> tuple[int, ...]:
        client = _rtsp_viewer(f"rtsp://127.0.0.1:{port}/cam0")
        try:
            image, _pts = client.read()
            return image.shape
        finally:
            client.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        caplog.set_level("WARNING")
        assert first_frame() == (48, 64, 3)
        size["now"] = (64, 96)
        time.sleep(0.5)
        assert first_frame() == (64, 96, 3)
    finally:
        stop.set()
        feeder.join(10)
        files.close()
        rtsp.stop()
    assert "restarting its RTSP mount" in caplog.text and "a new segment starts in" in caplog.text
    sizes = []
    for path in files.segments:
        with av.open(str(path)) as container:
            shapes = {f.to_ndarray(format="rgb24").shape for f in container.decode(video=0)}
        sizes.append(shapes)
    assert [p.name for p in files.segments] == ["cam0.mp4", "cam0-2.mp4"]
    assert sizes == [{(48, 64, 3)}, {(64, 96, 3)}]
