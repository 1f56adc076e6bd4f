"""What a camera model trained against a second capture can reach at best: the mean over many
independent captures of a scene (the Noise2Noise optimum, E[capture | scene]) scored against the
evaluation's reference (what the camera shows of the noiseless scene). An encoder or a tone curve
makes the two differ; this measures by how much. Dev clips only (the content groups' tuning clips,
never scored). Prints one row per clip and setting, then the means.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/camera_target_ceiling.py [--captures 12]

The mean of K captures still holds 1/K of a capture's noise; with the K/2 means beside it, the
error at K -> infinity is extrapolated (mse_K = bias + v / K).
"""

from __future__ import annotations

import argparse

import numpy as np

from stbn.camera import camera_grid
from stbn.evaluation.datasets import content_groups
from stbn.evaluation.metrics import psnr
from stbn.evaluation.noise import Camera


def _db(mse: float) -> float:
    return float(10.0 * np.log10(1.0 / max(mse, 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=int, default=12, help="independent captures per clip (even)")
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    k = args.captures // 2 * 2
    means: dict[str, list[tuple[float, float, float]]] = {}
    for dataset in content_groups(frames=args.frames):
        clean = dataset.tuning.clean
        for index in (0, 1):
            for condition in camera_grid():
                caps = [Camera(condition).apply(clean, seed, index) for seed in range(k)]
                reference = caps[0].reference
                stack = np.stack([c.noisy for c in caps])
                mse_k = float(np.mean((stack.mean(0) - reference) ** 2))
                halves = (stack[: k // 2], stack[k // 2 :])
                mse_half = 0.5 * sum(float(np.mean((h.mean(0) - reference) ** 2)) for h in halves)
                noisy = float(np.mean([psnr(caps[0].noisy[i], reference[i]) for i in range(len(reference))]))
                row = (noisy, _db(mse_k), _db(2.0 * mse_k - mse_half))
                means.setdefault(condition.name, []).append(row)
                print(f"{dataset.name:8s} {index} {condition.name:14s} input {row[0]:6.2f}  mean of {k} {row[1]:6.2f}  "
                      f"extrapolated {row[2]:6.2f}", flush=True)  # fmt: skip
    print(f"\n| setting | input | mean of {k} captures | extrapolated (the Noise2Noise optimum) |")
    print("|---|---:|---:|---:|")
    for name, rows in means.items():
        r = np.array(rows).mean(axis=0)
        print(f"| {name} | {r[0]:.2f} | {r[1]:.2f} | {r[2]:.2f} |")


if __name__ == "__main__":
    main()
