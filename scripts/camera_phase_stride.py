"""Does a wider pixel-shuffle than the 2x2 phases help on camera noise? Each camera clip (the
simulator's random cameras over synthetic-motion clips of the training photos) is denoised by the
shipped model on the live path (streaming L=2, uint8) with its frames split into s x s phases tiled
into one frame (s = 1: the full frame; 2: the shipped layout; 3, 4: AP-BSN-like wider strides), each
at its own best level from a sweep; prints the per-clip table and the means.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/camera_phase_stride.py --clips 8
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import stbn
from stbn.camera import CameraModel
from stbn.evaluation.metrics import mean_frame_psnr
from stbn.evaluation.protocol import stbn_streaming
from stbn.noise_estimation import NoiseConfig, NoiseMode, scale_levels
from stbn.training.motion import synthetic_clip
from stbn.training.photos import TRAIN_PHOTOS, WALLPAPER_TRAIN_PHOTOS, load_photos
from stbn.weights import shipped_checkpoint

STRIDES = (1, 2, 3, 4)
MULTIPLIERS = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)  # of the clip's 2x2-averaged level


def tile(frames: np.ndarray, s: int) -> np.ndarray:
    """(T, H, W, C), H and W multiples of s -> the s x s phases tiled into one frame each."""
    t, h, w, c = frames.shape
    return frames.reshape(t, h // s, s, w // s, s, c).transpose(0, 2, 1, 4, 3, 5).reshape(t, h, w, c)


def untile(frames: np.ndarray, s: int) -> np.ndarray:
    t, h, w, c = frames.shape
    return frames.reshape(t, s, h // s, s, w // s, c).transpose(0, 2, 1, 4, 3, 5).reshape(t, h, w, c)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = stbn.load_checkpoint(shipped_checkpoint()).model.eval()
    photos = load_photos(TRAIN_PHOTOS + WALLPAPER_TRAIN_PHOTOS)
    rows = []
    print("| clip | camera | input | " + " | ".join(f"s={s}" for s in STRIDES) + " |")
    print("|---|---|---:|" + "---:|" * len(STRIDES))
    for k in range(args.clips):
        rng = np.random.default_rng([args.seed, k])
        camera = CameraModel.sample(rng)
        clean = synthetic_clip(photos, 6, (192, 288), rng).frames  # 192 and 288: multiples of 2, 3 and 4
        noisy, reference = camera.simulate(clean, rng), camera.reference(clean)
        area2 = float(np.median([scale_levels(f).area2 for f in noisy]))
        best = []
        for s in STRIDES:
            scores = []
            for m in MULTIPLIERS:
                level = float(np.clip(area2 * m, 0.5, 254.0))
                out = stbn_streaming(model, tile(noisy, s).astype(np.float32) / 255.0, level, 2,
                                     NoiseConfig(mode=NoiseMode.FIXED, sigma=level))  # fmt: skip
                scores.append(mean_frame_psnr(untile(out, s), reference))
            best.append(max(scores))
        rows.append(best)
        print(f"| {k} | {camera.label()} | {mean_frame_psnr(noisy / 255.0, reference):.2f} | "
              + " | ".join(f"{b:.2f}" for b in best) + " |", flush=True)  # fmt: skip
    means = np.mean(rows, axis=0)
    print("\nmean: " + ", ".join(f"s={s} {m:.2f}" for s, m in zip(STRIDES, means)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
