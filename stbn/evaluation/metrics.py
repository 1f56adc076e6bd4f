"""The reference metric protocol (FloRNN/FastDVDnet): float frames in [0, 1], no quantisation, no border crop.

PSNR per frame over all three channels (data range 1, ground truth clipped to [0, 1]) -> mean over
frames = sequence PSNR -> mean over sequences. SSIM per frame with a Gaussian window (11 taps,
sigma 1.5, K1 0.01, K2 0.03), averaged the same way.

Identical frames have an infinite PSNR; a mean that includes an infinite value is infinite (it is
kept, not dropped, and printed as "inf").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def psnr(estimate: np.ndarray, clean: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB of ``estimate`` against ``clean`` (clipped to [0, data_range]) over the whole
    arrays (a frame, or a clip pooled); data range 1 (floats) or 255 (uint8); inf when identical."""
    if estimate.shape != clean.shape:
        raise ValueError(f"shape mismatch: estimate {estimate.shape} vs clean {clean.shape}")
    ref = np.clip(clean.astype(np.float64), 0.0, data_range)
    mse = float(np.mean((estimate.astype(np.float64) - ref) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def mean_frame_psnr(estimates: np.ndarray, cleans: np.ndarray, data_range: float = 1.0) -> float:
    """Mean over frames of the per-frame PSNR, as the evaluation protocol scores a clip."""
    return float(np.mean([psnr(e, c, data_range) for e, c in zip(estimates, cleans, strict=True)]))


def ssim(estimate: np.ndarray, clean: np.ndarray) -> float:
    """skimage SSIM of one (H, W, 3) frame: Gaussian weights, sigma 1.5 (11-tap window), data range 1."""
    from skimage.metrics import structural_similarity

    ref = np.clip(clean.astype(np.float64), 0.0, 1.0)
    return float(
        structural_similarity(
            ref,
            estimate.astype(np.float64),
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
        )
    )


def sequence_scores(
    estimate: np.ndarray, clean: np.ndarray, frames: Sequence[int] | None = None, with_ssim: bool = True
) -> dict[str, list[float]]:
    """Per-frame PSNR (and SSIM) of (N, H, W, 3) sequences, over ``frames`` (default: all)."""
    if estimate.shape != clean.shape:
        raise ValueError(f"shape mismatch: estimate {estimate.shape} vs clean {clean.shape}")
    idx = range(len(clean)) if frames is None else frames
    out: dict[str, list[float]] = {"psnr": [psnr(estimate[i], clean[i]) for i in idx]}
    if with_ssim:
        out["ssim"] = [ssim(estimate[i], clean[i]) for i in idx]
    return out


def mean(values: Sequence[float]) -> float:
    """Mean that keeps infinities (any +inf -> inf) and is NaN for an empty list."""
    if len(values) == 0:
        return float("nan")
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames -> uint8 with clipping and rounding (what a display or encoder receives)."""
    return np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
