"""Pipeline benchmark: the live pipeline against the bare engine, pipeline overhead at 720p, and
glass-to-glass latency over RTSP loopback. Prints a table (not run as a test).

    .venv/bin/python bench/pipeline_overhead.py [--checkpoint PATH|random] [--backend auto]

1. throughput: the same pre-generated noisy frames through ``StreamingDenoiser`` directly and through
   the pipeline (array source -> ring (block) -> inference -> ZeroMQ publish); ratio of frames/s.
2. overhead at 1280x720: capture + ring + publish latency per frame (end to end minus the inference
   stage), with a pass-through denoiser so that only the pipeline's own cost is measured, frames
   paced at 30 fps and a subscriber in another process receiving the raw frames over tcp loopback.
3. glass to glass: the synthetic timestamp source served by GstRtspServer (subprocess), ingested by
   the pipeline through the GStreamer appsink path, denoised, published; a subscriber process reads
   the timestamp drawn at the source back from the denoised frame.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import stbn
from engines import create_engine
from pipeline.config import SourceConfig, load_config
from pipeline.runner import Pipeline
from pipeline.sources import Frame, Source, synthetic_scene
from stbn.noise_estimation import NoiseConfig, NoiseMode
from stbn.streaming import DenoisedFrame, StreamingDenoiser
from stbn.weights import resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]


class ArraySource(Source):
    """Pre-generated frames, optionally paced (a stand-in for a decoder that costs nothing)."""

    def __init__(self, config: SourceConfig, frames: list[np.ndarray], fps: float = 0.0) -> None:
        super().__init__(config)
        self.frames = frames
        self.fps = fps
        self._i = 0
        self._start = 0.0

    def open(self) -> None:
        self._i = 0
        self._start = time.monotonic()

    def read(self) -> Frame | None:
        if self._i >= len(self.frames):
            return None
        if self.fps:
            delay = self._start + self._i / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        frame = self.frames[self._i]
        self._i += 1
        return frame, self._i / (self.fps or 30.0)


class PassThrough:
    """A denoiser that returns its input (lookahead 0): isolates the pipeline's own overhead."""

    lookahead = 0

    def push(self, frame: np.ndarray, seq: int, tag: object = None) -> list[DenoisedFrame]:
        return [DenoisedFrame(seq, frame.copy(), 0.0, tag=tag)]

    def flush(self) -> list[DenoisedFrame]:
        return []

    def reset(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def noisy_frames(n: int, w: int, h: int, sigma: float = 25.0) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        clean = synthetic_scene(k, w, h).astype(np.float32)
        out.append(np.clip(np.rint(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8))
    return out


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def base(checkpoint: str, backend: str, threads: int, out: Path, *extra: str) -> Any:
    return load_config(None, [
        f"engine.backend={backend}", f"engine.checkpoint={checkpoint}", "engine.device=cpu",
        f"engine.threads={threads}", f"report.dir={out}", "report.plot=false",
        f"publish.endpoint=tcp://127.0.0.1:{free_port()}", *extra,
    ])


def bench_throughput(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    w, h = args.size
    frames = noisy_frames(args.frames, w, h)
    cfg = base(args.checkpoint, args.backend, args.threads, out, f"lookahead={args.lookahead}", "noise.mode=estimate",
               "sources=[{id: bench, kind: synthetic, pace: false, ring_slots: 4, policy: block}]")
    described: list[str] = []

    def bare_run() -> float:
        engine = create_engine(cfg.engine)
        den = StreamingDenoiser(engine, args.lookahead, NoiseConfig(mode=NoiseMode.ESTIMATE))
        for k, f in enumerate(frames[:3]):  # warm-up
            den.push(f, k)
        den.flush()
        den.reset()
        t0 = time.perf_counter()
        n = 0
        for k, f in enumerate(frames):
            n += len(den.push(f, k))
        n += len(den.flush())
        fps = n / (time.perf_counter() - t0)
        described.append(engine.describe())
        engine.close()
        return fps

    def factory(_sid: str) -> StreamingDenoiser:
        e = create_engine(cfg.engine)
        d = StreamingDenoiser(e, args.lookahead, NoiseConfig(mode=NoiseMode.ESTIMATE))
        for k, f in enumerate(frames[:3]):
            d.push(f, k)
        d.flush()
        d.reset()
        return d

    def pipeline_run() -> tuple[float, str]:
        pipe = Pipeline(cfg, denoiser_factory=factory, sources={"bench": ArraySource(cfg.sources[0], frames)})
        report = pipe.run()
        return float(report["fps"]), str(report["engine"])

    # interleaved, best of `repeats`: the machine is shared, so take each side's best run
    bare, piped = [], []
    desc = ""
    for _ in range(args.repeats):
        bare.append(bare_run())
        fps, desc = pipeline_run()
        piped.append(fps)
    b, p = max(bare), max(piped)
    return {"size": f"{w}x{h}", "frames": len(frames), "bare_fps": round(b, 2), "pipeline_fps": round(p, 2),
            "ratio": round(p / b, 3), "engine": desc or (described[-1] if described else cfg.engine.backend.value),
            "runs": {"bare": [round(x, 2) for x in bare], "pipeline": [round(x, 2) for x in piped]}}


def bench_overhead(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    frames = noisy_frames(8, 1280, 720)
    frames = [frames[k % 8] for k in range(args.overhead_frames)]
    cfg = base(args.checkpoint, "torch", 1, out, "lookahead=0", "publish.wait_subscribers=1", "publish.sndhwm=4",
               "sources=[{id: hd, kind: synthetic, width: 1280, height: 720, pace: true, ring_slots: 4}]")
    sub = subprocess.Popen([sys.executable, "-m", "pipeline.subscribe", "--endpoint", cfg.publish.endpoint,
                            "--idle-timeout", "5", "--rcvhwm", "4", "--json", str(out / "overhead-sub.json")],
                           cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pipe = Pipeline(cfg, denoiser_factory=lambda _s: PassThrough(),
                    sources={"hd": ArraySource(cfg.sources[0], frames, fps=30.0)})
    pipe.run()
    sub.wait(60)
    iv = pipe.profiler.intervals_ms("hd")
    overhead = iv["end_to_end"] - iv["inference"]
    sub_rows = json.loads((out / "overhead-sub.json").read_text())["frames"] if sub.returncode == 0 else []
    ages = np.array([r["age_ms"] for r in sub_rows]) if sub_rows else np.zeros(1)
    return {
        "frames": len(frames),
        "capture_ring_publish_p50_ms": round(float(np.percentile(overhead, 50)), 3),
        "capture_ring_publish_p95_ms": round(float(np.percentile(overhead, 95)), 3),
        "publish_p50_ms": round(float(np.percentile(iv["publish"], 50)), 3),
        "subscriber_age_p50_ms": round(float(np.percentile(ages, 50)), 3),
        "subscriber_received": len(sub_rows),
    }


def bench_glass_to_glass(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    w, h = args.g2g_size
    server = subprocess.Popen([sys.executable, "scripts/rtsp_test_server.py", "--port", "0", "--width", str(w),
                               "--height", str(h), "--fps", str(args.g2g_fps), "--noise", "0"],
                              cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("READY"):
            return {"error": "RTSP server did not start"}
        url = f"rtsp://127.0.0.1:{line.split()[1]}/test"
        cfg = base(args.checkpoint, args.backend, args.threads, out, f"lookahead={args.lookahead}",
                   "noise.mode=fixed", "noise.sigma=0", "publish.wait_subscribers=1",
                   f"sources=[{{id: g2g, kind: rtsp, uri: '{url}', frames: {args.g2g_frames}, ring_slots: 1}}]")
        sub = subprocess.Popen([sys.executable, "-m", "pipeline.subscribe", "--endpoint", cfg.publish.endpoint,
                                "--timecode", "--idle-timeout", "5", "--json", str(out / "g2g-sub.json")],
                               cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        report = Pipeline(cfg).run()
        sub.wait(60)
        summary = json.loads((out / "g2g-sub.json").read_text())["summary"]
        g = summary.get("glass_to_glass_ms", {})
        s = report["streams"]["g2g"]
        return {"size": f"{w}x{h}@{args.g2g_fps:g}", "frames": summary["frames"], "g2g_p50_ms": g.get("p50"),
                "g2g_p95_ms": g.get("p95"), "unreadable": summary.get("timecode_unreadable"),
                "pipeline_e2e_p50_ms": s["latency_ms"]["end_to_end"].get("p50"),
                "compute_p50_ms": s["compute_ms"].get("p50"), "drops": s["drops"]["drop_oldest"],
                "lookahead_ms": s["lookahead_ms"]}
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="",
                        help="a cpu-rt checkpoint (default: the shipped one); 'random' = random weights (speed only)")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lookahead", type=int, default=2)
    parser.add_argument("--size", type=lambda s: tuple(map(int, s.split("x"))), default=(320, 180))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--overhead-frames", type=int, default=150)
    parser.add_argument("--g2g-size", type=lambda s: tuple(map(int, s.split("x"))), default=(160, 96))
    parser.add_argument("--g2g-fps", type=float, default=10.0)
    parser.add_argument("--g2g-frames", type=int, default=100)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    if args.checkpoint == "random":
        args.checkpoint = str(out / "random-cpu-rt.pt")
        stbn.save_checkpoint(args.checkpoint, stbn.build_model("cpu-rt"), preset="cpu-rt")
    else:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
    t = bench_throughput(args, out)
    print("\n| throughput | size | frames | bare engine fps | pipeline fps | ratio | engine |")
    print("|---|---|---|---|---|---|---|")
    print(f"| pipeline vs bare | {t['size']} | {t['frames']} | {t['bare_fps']} | {t['pipeline_fps']} | {t['ratio']} | "
          f"{t['engine']} |")
    print(f"runs (frames/s): {t['runs']}")
    o = bench_overhead(args, out)
    print("\n| overhead at 1280x720 (30 fps, pass-through denoiser) | p50 ms | p95 ms |")
    print("|---|---|---|")
    print(f"| capture + ring + publish | {o['capture_ring_publish_p50_ms']} | {o['capture_ring_publish_p95_ms']} |")
    print(f"| publish (ZeroMQ tcp send, raw 2.7 MB) | {o['publish_p50_ms']} | |")
    print(f"| capture -> subscriber process (age) | {o['subscriber_age_p50_ms']} | ({o['subscriber_received']} of "
          f"{o['frames']} received) |")
    g = bench_glass_to_glass(args, out)
    print("\n| glass to glass over RTSP loopback | value |")
    print("|---|---|")
    for k, v in g.items():
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
