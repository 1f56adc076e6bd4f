"""What running on Ray costs and buys, on this machine. Prints tables.

    .venv/bin/python bench/cluster_scaling.py [--streams 2] [--frames 150] [--size 320 180] [--repeats 3]
                                      [--videos 4] [--kills 2] [--skip live,restart,batch]

- live: the same streams (synthetic, unpaced, ONNX Runtime, 1 thread each) in one process
  (``run_pipeline.py``) and one actor per stream on a Ray instance started for the run
  (``run_pipeline.py --cluster local``), interleaved; total frames/s from each run's report, and
  the actors' start-up (actor asked for -> pipeline running: process, imports, engine build);
- restart: a two-node cluster on this machine (cluster.local), two paced streams, the worker node
  killed: seconds until its stream runs again on the head, and the gap each report gives;
- batch: ``--videos`` noisy clips denoised one after another by ``stbn denoise`` (2 threads) and as
  one ``stbn denoise DIR --cluster local`` batch (a worker of 1 thread per core), wall time.

Every command runs as a user would (subprocesses of the installed ``stbn`` / ``run_pipeline.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from cluster.local import LocalCluster, local_cluster_env
from stbn.weights import shipped_checkpoint

REPO = Path(__file__).resolve().parents[1]

CHECKPOINT = shipped_checkpoint()


def env() -> dict[str, str]:
    out = local_cluster_env()
    out["PYTHONPATH"] = str(REPO) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def live_config(path: Path, streams: int, frames: int, size: tuple[int, int], report: Path) -> None:
    w, h = size
    sources = "".join(
        f"  - {{id: cam{i}, kind: synthetic, width: {w}, height: {h}, fps: 30, frames: {frames}, pace: false, "
        f"seed: {i}}}\n" for i in range(streams)
    )  # fmt: skip
    path.write_text(
        f"sources:\n{sources}"
        f"engine: {{backend: onnxruntime, checkpoint: {CHECKPOINT}, preset: cpu-rt, device: cpu, threads: 1}}\n"
        "lookahead: 2\nnoise: {mode: estimate}\noutputs: {video_dir: ''}\n"
        f"report: {{dir: {report.parent}, name: {report.stem}, plot: false}}\n"
        "cluster: {num_cpus: 1}\n"
    )


def run_live(config: Path, report: Path, cluster: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(REPO / "run_pipeline.py"), "--config", str(config), "--quiet"]
    if cluster:
        cmd += ["--cluster", "local"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    out = json.loads(report.read_text())
    out["wall_s"] = wall
    return out


def bench_live(args: argparse.Namespace, work: Path) -> None:
    config, report = work / "live.yaml", work / "live.json"
    live_config(config, args.streams, args.frames, tuple(args.size), report)
    run_live(config, report, cluster=False)  # the engine cache (ONNX export) is warm for both
    fps: dict[str, list[float]] = {"one process": [], "cluster": []}
    walls: dict[str, list[float]] = {"one process": [], "cluster": []}
    startup: list[float] = []
    for _ in range(args.repeats):
        for name, cluster in (("one process", False), ("cluster", True)):
            r = run_live(config, report, cluster)
            fps[name].append(r["fps"])
            walls[name].append(r["wall_s"])
            if cluster:
                for s in r["streams"].values():
                    g = s["cluster"]["generations"][0]
                    startup.append(g["running_at"] - g["started_at"])
    one, many = statistics.median(fps["one process"]), statistics.median(fps["cluster"])
    print(f"\nlive: {args.streams} streams x {args.frames} frames {args.size[0]}x{args.size[1]}, unpaced, ORT 1 thread "
          f"each, median of {args.repeats}")  # fmt: skip
    print("| run | total frames/s | wall s (incl. start) |\n|---|---:|---:|")
    for name in fps:
        print(f"| {name} | {statistics.median(fps[name]):.1f} | {statistics.median(walls[name]):.1f} |")
    print(f"cluster / one process frames/s: {many / one:.3f}")
    print(f"actor start-up (asked for -> running), median of {len(startup)}: {statistics.median(startup):.2f} s "
          f"(max {max(startup):.2f})")  # fmt: skip


def restart_once(work: Path) -> tuple[float, float]:
    """A two-node cluster, two paced streams, the worker node killed: (seconds until its stream runs
    again elsewhere, the gap its report gives)."""
    import ray

    from cluster.streams import ClusterRun
    from pipeline.config import default_config_path, load_config

    with LocalCluster(head_cpus=2, worker_cpus=(1,)) as cluster:
        ray.init(address=cluster.address, logging_level="WARNING")
        try:
            cluster.wait_for_nodes(ray)
            config = load_config(default_config_path(), [
                "engine.backend=onnxruntime", f"engine.checkpoint={CHECKPOINT}", "engine.threads=1",
                "outputs.video_dir=", f"report.dir={work}", "report.plot=false", "lookahead=2",
                f"cluster.address={cluster.address}", "cluster.num_cpus=1", "cluster.publish_host=127.0.0.1",
            ])  # fmt: skip
            base = dataclasses.replace(config.sources[0], width=320, height=180, fps=15, frames=0, pace=True,
                                       policy="drop_oldest")  # fmt: skip
            sources = tuple(dataclasses.replace(base, id=f"cam{i}", seed=i) for i in range(2))
            run = ClusterRun(dataclasses.replace(config, sources=sources), ray)
            stop = threading.Event()
            result: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: result.update(r=run.run(stop)), daemon=True)
            thread.start()
            wait(lambda: len(run.placement()) == 2
                 and all(p["cluster_state"] == "running" for p in run.placement().values()), 120)  # fmt: skip
            time.sleep(3)
            worker = cluster.workers[0].node_id
            lost = next(sid for sid, slot in run.slots.items() if slot.current.node_id == worker)
            killed = time.monotonic()
            cluster.workers[0].kill()
            wait(lambda: run.placement()[lost]["generation"] == 1
                 and run.placement()[lost]["cluster_state"] == "running", 60)  # fmt: skip
            back = time.monotonic() - killed
            time.sleep(2)
            stop.set()
            thread.join(120)
            return back, result["r"]["streams"][lost]["gaps"][0]["gap_s"]
        finally:
            ray.shutdown()


def bench_restart(args: argparse.Namespace, work: Path) -> None:
    os.environ.update(local_cluster_env())
    back_s: list[float] = []
    gaps: list[float] = []
    for k in range(args.kills):
        back, gap = restart_once(work)
        back_s.append(back)
        gaps.append(gap)
        print(f"  kill {k + 1}: back after {back:.2f} s, reported gap {gap:.2f} s", flush=True)
    print(f"\nrestart after a node loss (Ray's health checks at 0.5 s x 3; restart back-off 1 s), {args.kills} kills:")
    print(f"kill -> running again elsewhere: median {statistics.median(back_s):.2f} s (max {max(back_s):.2f}); "
          f"reported gap (loss noticed -> new copy capturing): median {statistics.median(gaps):.2f} s")  # fmt: skip


def wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def write_videos(folder: Path, n: int, frames: int) -> None:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        scene = rng.integers(30, 225, (180, 640, 3)).astype(np.float32)
        with av.open(str(folder / f"clip{k}.mp4"), "w") as c:
            s = c.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt, s.options = 320, 180, "yuv420p", {"crf": "12"}
            for t in range(frames):
                img = np.clip(scene[:, 2 * t : 2 * t + 320] + rng.normal(0, 20, (180, 320, 3)), 0, 255).astype(np.uint8)
                c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            c.mux(s.encode())


def bench_batch(args: argparse.Namespace, work: Path) -> None:
    videos = work / "videos"
    write_videos(videos, args.videos, args.frames)
    stbn = Path(sys.executable).with_name("stbn")
    common = ["--sigma", "20", "--lookahead", "2", "--backend", "onnxruntime", "--no-progress"]
    rows = []
    for rep in range(args.repeats):
        out = work / f"seq{rep}"
        start = time.perf_counter()
        for clip in sorted(videos.iterdir()):
            subprocess.run([str(stbn), "denoise", str(clip), str(out / clip.name), "--threads", "2", *common],
                           env=env(), check=True, capture_output=True)  # fmt: skip
        seq = time.perf_counter() - start
        out = work / f"batch{rep}"
        start = time.perf_counter()
        subprocess.run([str(stbn), "denoise", str(videos), str(out), "--cluster", "local", "--threads", "1", *common],
                       env=env(), check=True, capture_output=True)  # fmt: skip
        rows.append((seq, time.perf_counter() - start))
    frames = args.videos * args.frames
    seq, batch = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    print(f"\nbatch: {args.videos} clips x {args.frames} frames 320x180, streaming L=2, ORT, median of {args.repeats}")
    print("| run | wall s | frames/s |\n|---|---:|---:|")
    print(f"| stbn denoise per file, one after another (2 threads) | {seq:.1f} | {frames / seq:.1f} |")
    print(f"| stbn denoise DIR --cluster local (2 workers x 1 thread) | {batch:.1f} | {frames / batch:.1f} |")
    print(f"batch / sequential throughput: {seq / batch:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--size", type=int, nargs=2, default=[320, 180], metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of live, restart, batch")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-cluster") as tmp:
        work = Path(tmp)
        if "live" not in skip:
            bench_live(args, work)
        if "restart" not in skip:
            bench_restart(args, work)
        if "batch" not in skip:
            bench_batch(args, work)


if __name__ == "__main__":
    main()
