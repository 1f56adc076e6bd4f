"""ZeroMQ publish/subscribe across real processes: wire round trip, slow subscribers, lossless mode, CURVE."""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth

from pipeline.config import CurveConfig, PublishConfig
from pipeline.frame import FrameRecord
from pipeline.publish import ZmqPublisher
from pipeline.runner import Pipeline
from pipeline.sources import synthetic_scene
from pipeline.subscribe import Subscriber

from .conftest import REPO, SubscriberProcess, config, free_port, run_with_subscriber, subprocess_env


def _image(k: int) -> np.ndarray:
    return synthetic_scene(k, 64, 48, seed=k)


def _publish_process(endpoint: str, encoding: str, count: int, curve_secret: str) -> None:
    curve = CurveConfig(server_secret_file=curve_secret) if curve_secret else None
    pub = ZmqPublisher(PublishConfig(endpoint=endpoint, encoding=encoding, lossless=True, wait_subscribers=1,
                                     curve=curve))
    pub.open()
    try:
        if not pub.wait_for_subscribers(1, timeout=20):
            return
        for k in range(count):
            rec = FrameRecord("camA", 100 + k, k / 30, 1_000 + k, _image(k), epoch=1, sigma=12.5)
            rec = rec.stamped("captured", 1_000 + k).stamped("infer_end", 2_000 + k).stamped("published")
            pub.send("camA", rec, lookahead=2)
    finally:
        pub.close()


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_header_and_payload_round_trip_across_processes(encoding: str) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_publish_process, args=(endpoint, encoding, 5, ""))
    with Subscriber(endpoint, topics=("camA",)) as sub:
        proc.start()
        frames = [sub.recv(timeout=30) for _ in range(5)]
    proc.join(30)
    assert proc.exitcode == 0
    assert all(f is not None for f in frames)
    for k, f in enumerate(frames):
        h = f.header
        assert (h["v"], h["stream"], h["seq"], h["epoch"], h["sigma"], h["encoding"]) == (1, "camA", 100 + k, 1, 12.5,
                                                                                          encoding)
        assert h["shape"] == [48, 64, 3] and h["dtype"] == "uint8" and h["lookahead"] == 2
        assert h["pts"] == pytest.approx(k / 30) and h["capture_ns"] == 1_000 + k
        assert h["t"]["captured"] == 1_000 + k and h["t"]["infer_end"] == 2_000 + k and h["t"]["published"] > 0
        assert f.topic == "camA" and f.image.shape == (48, 64, 3)
        if encoding == "raw":
            assert np.array_equal(f.image, _image(k))
        else:
            assert np.abs(f.image.astype(int) - _image(k)).mean() < 4
            assert f.image.nbytes > 0 and not np.array_equal(f.image, _image(k))  # really went through JPEG


def test_slow_subscriber_does_not_stall_the_pipeline(checkpoint: Path, tmp_path: Path) -> None:
    cfg = config(checkpoint, tmp_path, "sources[0].width=64", "sources[0].height=48", "sources[0].frames=60",
                 "sources[0].pace=false", "publish.sndhwm=2")
    # a subscriber that connects and never reads
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(cfg.publish.endpoint)
    try:
        t0 = time.monotonic()
        report = Pipeline(cfg).run()
        elapsed = time.monotonic() - t0
    finally:
        sock.close(0)
        ctx.term()
    assert report["frames_published"] == 60
    assert report["publish"]["blocked_s"] < 0.5
    assert report["latency_ms"]["publish"]["p99"] < 200
    assert elapsed < 30


def test_lossless_mode_delivers_everything_to_a_slow_subscriber(checkpoint: Path, tmp_path: Path) -> None:
    cfg = config(checkpoint, tmp_path, "sources[0].width=64", "sources[0].height=48", "sources[0].frames=40",
                 "sources[0].pace=false", "publish.sndhwm=1", "publish.lossless=true", "publish.wait_subscribers=1")
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--rcvhwm", "1", "--slow-ms", "30",
                            "--count", "40", "--idle-timeout", "30")
    report, result = run_with_subscriber(cfg, sub)
    assert [r["seq"] for r in result["frames"]] == list(range(40))
    assert report["frames_published"] == 40
    assert report["publish"]["lossless"] is True


def test_curve_authentication(tmp_path: Path) -> None:
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    _, client_secret = zmq.auth.create_certificates(tmp_path, "client")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_publish_process, args=(endpoint, "raw", 3, str(server_secret)))
    proc.start()
    try:
        # without the server's key: no handshake, no subscription, nothing received
        with Subscriber(endpoint) as plain:
            assert plain.recv(timeout=1.5) is None
        with Subscriber(endpoint, curve_server_public_file=str(server_public),
                        curve_client_secret_file=str(client_secret)) as sub:
            frames = [sub.recv(timeout=30) for _ in range(3)]
        assert [f.seq for f in frames if f is not None] == [100, 101, 102]
        assert np.array_equal(frames[0].image, _image(0))
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0


def test_a_live_viewer_that_falls_behind_skips_and_counts_stale_frames(checkpoint: Path, tmp_path: Path) -> None:
    """The subscriber's --max-age-ms: frames older than that on arrival are skipped and counted,
    so a slow viewer shows recent video instead of an ever older backlog."""
    cfg = config(checkpoint, tmp_path, "sources[0].width=64", "sources[0].height=48", "sources[0].frames=40",
                 "sources[0].pace=false", "publish.lossless=true", "publish.wait_subscribers=1")
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--rcvhwm", "1", "--slow-ms", "100",
                            "--max-age-ms", "150", "--idle-timeout", "5")
    _, result = run_with_subscriber(cfg, sub)
    assert result["summary"]["stale_skipped"] > 0
    assert result["summary"]["stale_skipped"] + len(result["frames"]) == 40  # lossless: every frame arrived
    assert max(r["age_ms"] for r in result["frames"]) <= 150


def test_subscriber_records_at_the_streams_rate_and_names_bad_paths(checkpoint: Path, tmp_path: Path) -> None:
    """--record takes the frame rate from the frames' pts (15 frames/s here, not an assumed 30); a
    folder that does not exist is an error, not created silently; a silent endpoint is reported."""
    import av

    cfg = config(checkpoint, tmp_path, "sources[0].width=64", "sources[0].height=48", "sources[0].frames=12",
                 "sources[0].fps=15", "sources[0].pace=false", "publish.lossless=true", "publish.wait_subscribers=1")
    video = tmp_path / "rec.mp4"
    sub = SubscriberProcess(cfg.publish.endpoint, tmp_path / "sub.json", "--record", str(video), "--count", "12",
                            "--idle-timeout", "20")
    run_with_subscriber(cfg, sub)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(15.0)
        assert sum(1 for _ in container.decode(stream)) == 12
    bad = subprocess.run(
        [sys.executable, "-m", "pipeline.subscribe", "--record", str(tmp_path / "no" / "such" / "x.mp4")],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "does not exist" in bad.stderr and not (tmp_path / "no").exists()
    silent = subprocess.run(
        [sys.executable, "-m", "pipeline.subscribe", "--endpoint", f"tcp://127.0.0.1:{free_port()}",
         "--idle-timeout", "7"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "no frame from" in silent.stderr


def test_publisher_freshness_drops_and_counts_frames_older_than_max_age() -> None:
    """publish.max_age_ms: a live viewer never gets a frame captured too long ago (after a stall or
    an outage); the publisher counts what it held back."""
    import time

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    pub = ZmqPublisher(PublishConfig(endpoint=endpoint, max_age_ms=500.0, sndhwm=16))
    pub.open()
    try:
        with Subscriber(endpoint, rcvhwm=16) as sub:
            assert pub.wait_for_subscribers(1, timeout=10)
            now = time.time_ns()
            for seq, age_s in enumerate((0.0, 2.0, 0.0)):
                rec = FrameRecord("camA", seq, None, now - int(age_s * 1e9), _image(seq)).stamped("published")
                pub.send("camA", rec)
            got = [sub.recv(timeout=5) for _ in range(2)]
            assert [f.seq for f in got if f is not None] == [0, 2]
            assert sub.recv(timeout=0.3) is None
        stats = pub.stats()
        assert stats["sent"] == 2 and stats["stale_dropped"] == 1
    finally:
        pub.close()
    with pytest.raises(ValueError, match="cannot go with lossless"):
        PublishConfig(lossless=True, max_age_ms=100.0)
