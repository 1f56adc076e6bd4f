"""8-bit input: what the clipping of noisy frames to 0..255 costs, and how much removing its bias
(stbn.clipping) gives back, per content group and sigma, all in one run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/clipping.py [--checkpoint PATH]

Rows: the same model offline on float (unclipped) noisy input, the paper's protocol; offline on the
uint8 input a camera delivers, raw and with the bias removed; streaming L=0 (the live path) raw and
with the bias removed. First 2 clips of each content group of `stbn eval`, 8 frames, 256x384.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import stbn
from stbn.clipping import declip
from stbn.evaluation.datasets import CONTENT_GROUPS, content_group
from stbn.evaluation.metrics import mean_frame_psnr, to_uint8
from stbn.evaluation.noise import add_noise
from stbn.evaluation.protocol import stbn_offline, stbn_streaming
from stbn.noise_estimation import NoiseConfig, NoiseMode
from stbn.weights import resolve_checkpoint

COLUMNS = ("float input", "uint8", "uint8 + declip", "L=0 uint8", "L=0 + declip")




def scores(model: stbn.STBN, clean: np.ndarray, sigma: float, seed: int) -> list[float]:
    noisy = add_noise(clean, sigma, seed=seed)
    uint8 = to_uint8(noisy).astype(np.float32) / 255.0
    offline_float, _ = stbn_offline(model, noisy, sigma)
    offline_uint8, _ = stbn_offline(model, uint8, sigma)
    variance = (0.0, (sigma / 255.0) ** 2)
    raw_stream = stbn_streaming(model, noisy, sigma, 0, NoiseConfig(mode=NoiseMode.FIXED, sigma=sigma, clipped=False))
    stream = stbn_streaming(model, noisy, sigma, 0)
    outputs = (offline_float, offline_uint8, declip(offline_uint8, *variance), raw_stream, stream)
    return [mean_frame_psnr(o, clean) for o in outputs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="default: the shipped CPU model")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[10.0, 30.0, 50.0])
    parser.add_argument("--clips", type=int, default=2, help="clips per content group")
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.checkpoint = str(resolve_checkpoint(args.checkpoint))
    model = stbn.load_checkpoint(args.checkpoint).model.eval()
    print(f"{args.checkpoint}: PSNR in dB, mean over {args.clips} clips x {args.frames} frames")
    print("| group | σ | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    table = []
    for group in CONTENT_GROUPS:
        dataset = content_group(group.name, frames=args.frames)
        for sigma in args.sigmas:
            rows = [scores(model, c.clean, sigma, i) for i, c in enumerate(dataset.sequences[: args.clips])]
            row = np.mean(rows, axis=0)
            table.append(row)
            print(f"| {group.name} | {sigma:g} | " + " | ".join(f"{v:.2f}" for v in row) + " |", flush=True)
    print("| all | | " + " | ".join(f"{v:.2f}" for v in np.mean(table, axis=0)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
