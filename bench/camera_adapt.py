"""Camera noise through ``stbn denoise`` as a user meets it (blind: correlated noise measured, its
level estimated), offline and streamed at L=2, and what test-time adaptation would do there: on
simulated camera clips (stbn.camera) over evaluation wallpapers that no training used.

    OMP_NUM_THREADS=1 .venv/bin/python bench/camera_adapt.py        # the table in docs/BENCHMARKS.md

Each clip is written as PNG frames (what a camera's decoder hands over), denoised by
``pipeline.denoise_file.denoise_file`` exactly as ``stbn denoise IN OUT [--lookahead 2]`` runs, read
back and scored against what the camera shows of the noiseless scene (the classical baselines on
the same settings: ``stbn eval --cameras all``). ``stbn denoise --adapt`` skips adaptation on
correlated noise; the last columns show why: the same 300 steps run anyway (the library's
``adapt`` on the phases the model sees, its guard deciding), then the offline denoise.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import stbn
from pipeline.denoise_file import DenoiseOptions, denoise_file, read_input
from stbn.adapt import AdaptConfig, adapt, choose_objective, trained_loss
from stbn.camera import CameraCondition, Codec, IsoLevel
from stbn.evaluation.metrics import mean, psnr
from stbn.evaluation.noise import Camera
from stbn.noise_estimation import NoiseConfig, clip_noise
from stbn.offline import denoise_frames
from stbn.phases import PhaseTiling
from stbn.training.motion import synthetic_clip
from stbn.training.photos import load_photos
from stbn.weights import resolve_checkpoint

PLASMA = "deb:plasma-workspace-wallpapers:usr/share/wallpapers/{}/contents/images/2560x1600.jpg"
CLIPS = (("Kite", CameraCondition(IsoLevel.HIGH)), ("Path", CameraCondition(IsoLevel.HIGH, Codec.H264)),
         ("EveningGlow", CameraCondition(IsoLevel.MID)))  # fmt: skip


def _score(frames: np.ndarray, reference: np.ndarray) -> float:
    return mean([psnr(frames[i].astype(np.float32) / 255.0, reference[i]) for i in range(len(reference))])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="", help="default: the shipped CPU model")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(360, 640))
    parser.add_argument("--adapt", type=int, default=300)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.checkpoint}")
    loaded = stbn.load_checkpoint(resolve_checkpoint(args.checkpoint))
    loss, mean_l2 = trained_loss(loaded.metadata)
    rows = ["| clip | camera | noisy | stbn denoise | --lookahead 2 | adapted anyway | kept by the guard | adapt s |",
            "|---|---|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for k, (photo, condition) in enumerate(CLIPS):
        clean = synthetic_clip(load_photos([PLASMA.format(photo)]), args.frames, tuple(args.size),
                               np.random.default_rng(k)).frames  # fmt: skip
        given = Camera(condition).apply(clean, seed=0, clip_index=k)
        noisy = np.round(given.noisy * 255.0).astype(np.uint8)
        scores = []
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "in"
            source.mkdir()
            for i, frame in enumerate(noisy):
                cv2.imwrite(str(source / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            for lookahead in (None, 2):
                out = Path(tmp) / f"out-{lookahead}"
                summary = denoise_file(source, out, DenoiseOptions(checkpoint=args.checkpoint, lookahead=lookahead,
                                                                   backend="torch", threads=1))  # fmt: skip
                scores.append(_score(read_input(out).frames, given.reference))
                print(f"{photo} {condition.name}: {scores[-1]:.2f} dB; {summary.line()}", flush=True)
        noise = clip_noise(noisy, NoiseConfig())
        tiled = PhaseTiling(*noisy.shape[1:3]).tile(noisy).astype(np.float32) / 255.0
        start = time.time()
        config = AdaptConfig(steps=args.adapt, objective=choose_objective(noisy, stabilised=False))
        result = adapt(loaded.model, tiled, noise.level255, config, loss, mean_l2)
        adapt_s = time.time() - start
        adapted = np.stack(list(denoise_frames(result.model, noisy, noise.level255, correlated=noise.correlated)))
        scores.append(_score(adapted, given.reference))
        print(f"{photo} {condition.name}: adapted anyway {scores[-1]:.2f} dB, kept {result.kept_adapted}", flush=True)
        kept = f"{'yes' if result.kept_adapted else 'no'} ({config.objective.value})"
        rows.append(f"| {photo} | {condition.name} | {_score(noisy, given.reference):.2f} | "
                    + " | ".join(f"{s:.2f}" for s in scores) + f" | {kept} | {adapt_s:.0f} |")  # fmt: skip
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
