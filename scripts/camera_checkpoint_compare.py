"""A camera-noise checkpoint against the shipped model, each at its best fixed level: the check behind
docs/camera.md's "second capture" row. Prints one row per clip and setting, then the means.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/camera_checkpoint_compare.py CHECKPOINT [--clips 1] [--frames 6]

Clips: the first ``--clips`` of each evaluation content group, through every camera setting of
``stbn.camera.camera_grid`` (low / mid / high ISO, without and with H.264). Rows: the shipped model
on the 2x2 phases (the live path's layout on correlated noise) and CHECKPOINT on the full frame and
on the phases, streaming L=2 at the best of a few fixed levels (an oracle sweep), CHECKPOINT at the
noise's own standard deviation, and CHECKPOINT offline: posterior mean and prior mean alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from stbn import build_model, load_checkpoint
from stbn.camera import camera_grid
from stbn.evaluation.datasets import content_groups
from stbn.evaluation.metrics import mean, psnr
from stbn.evaluation.noise import Camera, Noisy
from stbn.evaluation.protocol import BEST_LEVEL_FACTORS, stbn_offline, stbn_streaming
from stbn.model import STBN
from stbn.noise_estimation import Correlation, NoiseConfig, NoiseMode


def score(estimate: np.ndarray, reference: np.ndarray) -> float:
    return mean([psnr(estimate[i], reference[i]) for i in range(len(estimate))])


def by_level(model: STBN, noisy: Noisy, layout: Correlation, factors: Sequence[float]) -> dict[float, float]:
    """Streaming L=2 PSNR at each level factor x the noise's standard deviation."""
    out = {}
    for factor in factors:
        level = float(np.clip(noisy.level * factor, 0.5, 255.0))
        estimate = stbn_streaming(model, noisy.noisy, level, 2, NoiseConfig(NoiseMode.FIXED, level, correlation=layout))
        out[factor] = score(estimate, noisy.reference)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--clips", type=int, default=1, help="clips per content group")
    parser.add_argument("--frames", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shipped = build_model("cpu-rt", weights="shipped").eval()
    model = load_checkpoint(args.checkpoint).model.eval()
    rows: dict[str, list[dict[str, float]]] = {}
    for dataset in content_groups(frames=args.frames):
        for index, clip in enumerate(dataset.sequences[: args.clips]):
            for condition in camera_grid():
                noisy = Camera(condition).apply(clip.clean, 0, index)
                frame = by_level(model, noisy, Correlation.WHITE, (0.5, 0.7, 1.0, 1.4))
                posterior, prior = stbn_offline(model, noisy.noisy, noisy.level)
                row = {
                    "noisy": score(noisy.noisy, noisy.reference),
                    "shipped, phases, best level": max(by_level(shipped, noisy, Correlation.CORRELATED,
                                                                BEST_LEVEL_FACTORS).values()),
                    "checkpoint, frame, best level": max(frame.values()),
                    "checkpoint, frame, at the std": frame[1.0],
                    "checkpoint, phases, best level": max(by_level(model, noisy, Correlation.CORRELATED,
                                                                   (0.7, 1.0, 1.4)).values()),
                    "checkpoint, offline posterior": score(posterior, noisy.reference),
                    "checkpoint, offline prior mean": score(prior, noisy.reference),
                }  # fmt: skip
                rows.setdefault(condition.name, []).append(row)
                print(dataset.name, index, condition.name, {k: round(v, 2) for k, v in row.items()}, flush=True)
    names = list(next(iter(rows.values()))[0])
    print("\n| mean PSNR (dB) | " + " | ".join(rows) + " |\n|---|" + "---:|" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{np.mean([r[name] for r in rs]):.2f}" for rs in rows.values()) + " |")


if __name__ == "__main__":
    main()
