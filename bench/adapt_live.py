"""Online adaptation in the live pipeline: PSNR of every published frame over time against the
known clean frames, with `adapt:` off and on, in the same run; frames dropped, inference latency,
adaptation rounds. The synthetic source's scene (coloured bars and a moving disc) is unlike the
training data, the situation adaptation is for.

    .venv/bin/python bench/adapt_live.py                 # the table and docs/images/adapt-live.png

Both runs: the synthetic source at 320x180, 10 frames/s, AWGN sigma 25 (known to the denoiser),
block mode (nothing may be dropped), look-ahead 0, ONNX Runtime on 1 thread, a lossless ZeroMQ
subscriber in this process scoring each frame against ``synthetic_scene(seq)``.
"""

from __future__ import annotations

import argparse
import socket
import threading
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import load_config
from pipeline.runner import Pipeline
from pipeline.sources import synthetic_scene
from pipeline.subscribe import Subscriber
from stbn.evaluation.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])




def run(args: argparse.Namespace, adapt: bool, out: Path) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    w, h = args.width, args.height
    source = (
        f"{{id: cam, kind: synthetic, width: {w}, height: {h}, fps: {args.fps}, frames: {args.frames}, "
        f"noise_sigma: {args.sigma}, timestamp: false, policy: block, seed: 0}}"
    )
    overrides = [
        f"sources=[{source}]", "engine.backend=onnxruntime", "engine.threads=1", "engine.device=cpu",
        "lookahead=0", "noise.mode=fixed", f"noise.sigma={args.sigma}", f"publish.endpoint={endpoint}",
        "publish.lossless=true", "publish.wait_subscribers=1", f"report.dir={out}", "report.plot=false",
        f"report.name={'adapt-on' if adapt else 'adapt-off'}", f"adapt.enabled={str(adapt).lower()}",
        f"adapt.every_s={args.every_s}", f"adapt.steps={args.steps}", "adapt.history_frames=32",
    ]  # fmt: skip
    config = load_config(None, overrides)
    scores: list[tuple[int, float]] = []

    def subscribe() -> None:
        with Subscriber(endpoint, rcvhwm=1000) as sub:
            while len(scores) < args.frames:
                frame = sub.recv(timeout=60)
                if frame is None:
                    return
                scores.append((frame.seq, psnr(frame.image, synthetic_scene(frame.seq, w, h, 0), 255.0)))

    reader = threading.Thread(target=subscribe, daemon=True)
    reader.start()
    report = Pipeline(config).run()
    reader.join(timeout=30)
    return report, scores


def plot(series: dict[str, list[tuple[int, float]]], path: Path, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for label, points in series.items():
        seq = np.array([s for s, _ in points])
        values = np.array([v for _, v in points])
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(seq[window - 1 :], smooth, label=label)
    ax.set_xlabel("frame (10 frames/s)")
    ax.set_ylabel(f"PSNR, dB ({window}-frame mean)")
    ax.set_title("online adaptation: synthetic stream, sigma 25, L=0")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--every-s", type=float, default=15.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--plot", default=str(ROOT / "docs" / "images" / "adapt-live.png"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "adapt-live"))
    args = parser.parse_args()
    out = Path(args.out)
    rows = [
        "| adapt | frames published | dropped | PSNR first 100 | PSNR last 100 | inference p50 / p95 ms "
        "| rounds swapped / rolled back |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    series = {}
    for adapt in (False, True):
        report, scores = run(args, adapt, out)
        stream = report["streams"]["cam"]
        values = [v for _, v in sorted(scores)]
        inference = stream["latency_ms"]["inference"]
        rounds = stream["adaptations"]
        rows.append(
            f"| {'on' if adapt else 'off'} | {stream['frames_published']} | {sum(stream['drops'].values())} | "
            f"{np.mean(values[:100]):.2f} | {np.mean(values[-100:]):.2f} | {inference['p50']:.1f} / "
            f"{inference['p95']:.1f} | {rounds.get('swapped', 0)} / {rounds.get('rolled_back', 0)} |"
        )
        series[f"adapt {'on' if adapt else 'off'}"] = sorted(scores)
        print(rows[-1], flush=True)
    plot(series, Path(args.plot), 20)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
