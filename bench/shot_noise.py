"""Signal-dependent (shot) noise: the AWGN-trained model given one noise level against the same model
through the variance-stabilising transform (stbn/stabilize.py), offline and streaming, in one run.

    OMP_NUM_THREADS=2 .venv/bin/python bench/shot_noise.py      # the table in docs/BENCHMARKS.md

Clips are bench/adapt.py's: plasma "Path" with Poisson-Gaussian noise (gain 0.02, sigma 5) and, as
a check that the shot-noise path costs nothing on AWGN, plasma "Kite" at AWGN 25. Offline is
``stbn denoise`` without and with ``--noise poisson-gaussian``; streaming is the live loop with
``noise.mode: estimate`` and ``estimate-poisson-gaussian`` (PyTorch eager runner).
"""

from __future__ import annotations

import numpy as np
import torch
from adapt import clips  # the same clips as the adaptation benchmark

import stbn
from stbn.evaluation.metrics import psnr
from stbn.model import STBN
from stbn.noise_estimation import NoiseConfig, estimate_clip_noise, estimate_video_sigma
from stbn.offline import denoise_frames
from stbn.step import EagerRunner
from stbn.streaming import StreamingDenoiser
from stbn.weights import shipped_checkpoint


@torch.no_grad()
def _stream(model: STBN, noisy: np.ndarray, mode: str, lookahead: int) -> np.ndarray:
    denoiser = StreamingDenoiser(EagerRunner(model), lookahead, NoiseConfig(mode=mode))
    return np.stack([f.image for f in denoiser.stream(noisy)])


def main() -> int:
    model = stbn.load_checkpoint(shipped_checkpoint()).model.eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {shipped_checkpoint()}")
    rows = [
        "| clip | noise treated as | offline | L=0 | L=2 |",
        "|---|---|---:|---:|---:|",
    ]
    for name, clean, noisy, _ in clips(24)[:2]:
        a, b = estimate_clip_noise(noisy)
        treatments = [
            (f"one level (estimated {estimate_video_sigma(noisy):.1f})", 0.0, estimate_video_sigma(noisy), "estimate"),
            (f"Poisson-Gaussian (estimated a {a:.4f}, sigma {np.sqrt(b) * 255:.1f})", a, np.sqrt(b) * 255,
             "estimate-poisson-gaussian"),
        ]  # fmt: skip
        for label, gain, sigma, mode in treatments:
            scores = [np.stack(list(denoise_frames(model, noisy, sigma, gain=gain)))]
            scores += [_stream(model, noisy, mode, lookahead) for lookahead in (0, 2)]
            rows.append(f"| {name} | {label} | " + " | ".join(f"{psnr(s, clean, 255.0):.2f}" for s in scores) + " |")
            print(rows[-1], flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
