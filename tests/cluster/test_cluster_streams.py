"""Live streams on a real Ray cluster: one actor per stream, a node killed mid-stream, the merged report,
the driver's /metrics and /healthz, ZeroMQ subscribers on the actors' endpoints."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from cluster.actor import StreamActor
from cluster.local import LocalCluster
from cluster.streams import ClusterRun
from pipeline.config import PipelineConfig, default_config_path, load_config
from pipeline.subscribe import Subscriber
from tests.cluster.conftest import REPO, ray_env

pytestmark = pytest.mark.slow


def stream_config(checkpoint: Path, out: Path, address: str, frames: int = 0, fps: float = 10.0) -> PipelineConfig:
    overrides = [
        "engine.backend=torch", f"engine.checkpoint={checkpoint}", "engine.preset=cpu-rt", "engine.device=cpu",
        "engine.threads=1", "noise.mode=fixed", "noise.sigma=20", "lookahead=1", "outputs.video_dir=",
        f"report.dir={out}", "report.name=cluster", "report.plot=false", "metrics.enabled=true", "metrics.port=0",
        f"cluster.address={address}", "cluster.num_cpus=1", "cluster.publish_host=127.0.0.1",
    ]  # fmt: skip
    config = load_config(default_config_path(), overrides)
    source = dataclasses.replace(config.sources[0], width=96, height=64, fps=fps, frames=frames, pace=True,
                                 policy="drop_oldest")  # fmt: skip
    sources = (dataclasses.replace(source, id="cam0", seed=0), dataclasses.replace(source, id="cam1", seed=1))
    return dataclasses.replace(config, sources=sources)


class Collector:
    """A ZeroMQ subscriber on a thread: (epoch, seq) of every frame it receives."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.frames: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with Subscriber(self.endpoint, rcvhwm=1000) as sub:
            while not self._stop.is_set():
                frame = sub.recv(timeout=0.2)
                if frame is not None:
                    self.frames.append((int(frame.header.get("epoch", 0)), frame.seq))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_until(condition: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_killed_node_s_stream_comes_back_on_the_other_node(
    two_node_cluster: LocalCluster, cluster_checkpoint: Path, tmp_path: Path
) -> None:
    import ray

    config = stream_config(cluster_checkpoint, tmp_path, two_node_cluster.address)
    run = ClusterRun(config, ray)
    stop = threading.Event()
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(report=run.run(stop)), daemon=True)
    thread.start()
    collectors: dict[str, Collector] = {}
    try:
        live = lambda sid, n: sid in run.snapshot() and run.snapshot()[sid].status.published >= n  # noqa: E731
        wait_until(lambda: live("cam0", 5) and live("cam1", 5), 120, "both streams publishing")
        where = run.placement()
        nodes = {sid: run.slots[sid].current.node_id for sid in where}
        assert len(set(nodes.values())) == 2, f"the streams were not spread over the two nodes: {nodes}"
        lost = next(sid for sid, node in nodes.items() if node == two_node_cluster.workers[0].node_id)
        kept = "cam1" if lost == "cam0" else "cam0"
        for sid, info in where.items():
            assert info["endpoint"].startswith("tcp://127.0.0.1:") and info["cluster_state"] == "running"
            collectors[sid] = Collector(info["endpoint"])
        # the driver's /healthz and /metrics show both streams and where they run
        port = run.metrics.port
        code, health = get_json(f"http://127.0.0.1:{port}/healthz")
        assert code == 200 and health["ok"] and set(health["placement"]) == {"cam0", "cam1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert f'stbn_stream_placement{{endpoint="{where[lost]["endpoint"]}"' in metrics
        time.sleep(2.0)

        two_node_cluster.workers[0].kill()
        back = wait_until(
            lambda: run.placement()[lost]["generation"] == 1 and run.placement()[lost]["cluster_state"] == "running",
            30, "the lost stream running again",
        )  # fmt: skip
        assert back < 15.0, f"the lost stream came back after {back:.1f} s"
        assert run.slots[lost].current.node_id != two_node_cluster.workers[0].node_id
        new_endpoint = run.placement()[lost]["endpoint"]
        collectors[f"{lost}-after"] = Collector(new_endpoint)
        published = run.snapshot()[lost].status.published
        more = lambda: run.snapshot()[lost].status.published >= published + 10  # noqa: E731
        wait_until(more, 30, "the restarted stream publishing")
        # while restarting it reads as a reconnecting stream; /healthz names its new place
        code, health = get_json(f"http://127.0.0.1:{port}/healthz")
        assert health["placement"][lost]["endpoint"] == new_endpoint and health["placement"][lost]["restarts"] == 1
    finally:
        stop.set()
        thread.join(120)
        for c in collectors.values():
            c.close()
    assert not thread.is_alive()
    report = result["report"]
    assert report["ok"], report["error"]
    streams = report["streams"]
    # the other stream lost nothing: every frame captured was published, in order, one epoch
    other = streams[kept]
    assert other["reconnects"] == 0 and other["gaps"] == [] and other["in_order"]
    assert other["published"] == other["captured"] == other["frames_published"] > 30
    got = [seq for _, seq in collectors[kept].frames]
    assert got == list(range(got[0], got[0] + len(got))), "the kept stream's subscriber missed or repeated frames"
    # the lost one: reported like a reconnect, sequence numbers going on above the lost ones
    hit = streams[lost]
    assert hit["reconnects"] == 1 and hit["epoch"] == 1 and hit["in_order"]
    gap = hit["gaps"][0]
    assert gap["cause"].startswith("actor restarted") and gap["gap_s"] < 15
    generations = hit["cluster"]["generations"]
    assert [g["generation"] for g in generations] == [0, 1] and generations[0]["end"].startswith("lost")
    assert generations[1]["first_seq"] > gap["last_seq_before"]
    before = collectors[lost].frames
    after = collectors[f"{lost}-after"].frames
    assert before and after and all(e == 0 for e, _ in before) and all(e == 1 for e, _ in after)
    assert min(s for _, s in after) > max(s for _, s in before), (hit["gaps"], generations)
    assert hit["published"] == sum(g["published"] for g in generations)


def test_an_actor_no_longer_polled_stops_its_stream(
    two_node_cluster: LocalCluster, cluster_checkpoint: Path, tmp_path: Path
) -> None:
    """The lease: a copy whose driver gave it up (cut off, not dead) stops, so one copy publishes."""
    import ray

    config = stream_config(cluster_checkpoint, tmp_path, two_node_cluster.address)
    one = dataclasses.replace(config, sources=config.sources[:1])
    actor = ray.remote(StreamActor).options(num_cpus=1).remote(one, "127.0.0.1", None, 1.5)
    try:
        started = ray.get(actor.start.remote(60.0), timeout=90)
        assert started.error is None and started.endpoint.startswith("tcp://127.0.0.1:")
        time.sleep(3.5)
        poll = ray.get(actor.poll.remote(), timeout=30)
        assert poll.fenced and not poll.running
        assert poll.live.status.state.value == "ended"  # stopped as a source that ends: drained, flushed
    finally:
        ray.kill(actor)


def local_config(
    folder: Path, checkpoint: Path, name: str, frames: tuple[int, int], fps: float, pace: bool, lookahead: int
) -> Path:
    """A config of two small synthetic streams (cam0, cam1) for ``--cluster local``, its report
    ``folder/out/<name>.json``."""
    sources = "".join(
        f"  - {{id: cam{i}, kind: synthetic, width: 96, height: 64, fps: {fps}, frames: {n}, "
        f"pace: {str(pace).lower()}, seed: {i}}}\n" for i, n in enumerate(frames)
    )  # fmt: skip
    config = folder / f"{name}.yaml"
    config.write_text(
        f"sources:\n{sources}"
        f"engine: {{backend: torch, checkpoint: {checkpoint}, preset: cpu-rt, device: cpu, threads: 1}}\n"
        f"noise: {{mode: fixed, sigma: 20}}\nlookahead: {lookahead}\nmetrics: {{enabled: true, port: 0}}\n"
        f"report: {{dir: {folder / 'out'}, name: {name}, plot: false}}\ncluster: {{num_cpus: 1}}\n"
    )
    return config


def test_run_pipeline_on_a_local_cluster_publishes_every_frame_once(cluster_checkpoint: Path, tmp_path: Path) -> None:
    """``run_pipeline.py --cluster local``: two finite streams on two actors of a Ray instance started
    for the run; each frame is published once, in order, and the merged report says so."""
    config = local_config(tmp_path, cluster_checkpoint, "local", frames=(40, 30), fps=30, pace=False, lookahead=2)
    env = ray_env()
    proc = subprocess.run(
        [sys.executable, "run_pipeline.py", "--config", str(config), "--cluster", "local"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "70 frames" in proc.stderr and "0 actor restart(s)" in proc.stderr
    report = json.loads((tmp_path / "out" / "local.json").read_text())
    assert report["ok"] and report["frames_published"] == 70
    pids = set()
    for sid, frames in (("cam0", 40), ("cam1", 30)):
        stream = report["streams"][sid]
        assert stream["published"] == stream["captured"] == stream["frames_published"] == frames
        assert stream["in_order"] and stream["reconnects"] == 0
        (generation,) = stream["cluster"]["generations"]
        assert generation["end"] == "ended" and generation["endpoint"].startswith("tcp://127.0.0.1:")
        pids.add(generation["pid"])
    assert len(pids) == 2, "the two streams did not run in two actor processes"


def test_a_stream_that_cannot_fit_any_node_is_a_clear_error(cluster_checkpoint: Path, tmp_path: Path) -> None:
    env = ray_env()
    proc = subprocess.run(
        [sys.executable, "run_pipeline.py", "--cluster", "local", "--set", "cluster.num_gpus=1",
         "--set", f"engine.checkpoint={cluster_checkpoint}", "--set", f"report.dir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "asks for 2 CPU / 1 GPU, more than any node has" in proc.stderr


def test_ctrl_c_stops_every_actor_and_writes_one_report(cluster_checkpoint: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole process group: the driver and the Ray processes it
    started) on ``run_pipeline.py --cluster local`` with endless streams: the actors drain and stop,
    one merged report, exit 0."""
    config = local_config(tmp_path, cluster_checkpoint, "stopped", frames=(0, 0), fps=10, pace=True, lookahead=1)
    proc = subprocess.Popen(
        [sys.executable, "run_pipeline.py", "--config", str(config), "--cluster", "local"],
        cwd=REPO, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while time.monotonic() < deadline and seen.count("running on node") < 2:
            line = proc.stderr.readline()
            assert line, "the run ended before both streams ran"
            seen += line
        time.sleep(3)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, (seen + err)[-3000:]
    report = json.loads((tmp_path / "out" / "stopped.json").read_text())
    assert report["ok"] and set(report["streams"]) == {"cam0", "cam1"}
    for stream in report["streams"].values():
        assert stream["published"] >= 10 and stream["in_order"]
        assert stream["cluster"]["generations"][0]["end"] in ("stopped", "ended")


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        (["run_pipeline.py", "--cluster", "nonsense"], 2,
         "run_pipeline: config error: cluster.address must be local, auto, HOST:PORT or ray://HOST:PORT"),
        (["run_pipeline.py", "--cluster", "127.0.0.1:{port}"], 1, "run_pipeline: error: nothing answers at 127.0.0.1:"),
        (["-m", "cluster.cli", "denoise", "{tmp}", "{tmp}/out", "--cluster", "nonsense"], 2,
         "stbn denoise: --cluster must be local, auto, HOST:PORT or ray://HOST:PORT"),
        (["-m", "cluster.cli", "denoise", "{tmp}", "{tmp}/out", "--cluster", "127.0.0.1:{port}"], 1,
         "stbn denoise: error: nothing answers at 127.0.0.1:"),
    ],
)  # fmt: skip
def test_a_bad_or_dead_cluster_address_is_one_line_at_once(
    command: list[str], status: int, message: str, tmp_path: Path
) -> None:
    """A malformed address is a config error; a head where nothing listens fails within seconds (Ray
    itself would retry for minutes), before anything starts."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "clip.mp4").write_bytes(b"")
    args = [a.format(port=port, tmp=tmp_path) for a in command]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=ray_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == status, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 30
