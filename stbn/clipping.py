"""Undo the bias that clipping leaves in a denoised 8-bit image (Foi, "Clipped noisy images:
heteroskedastic modeling and practical denoising", Signal Processing 2009).

A camera or a video file stores clip(x + n) in 0..255. Near black (and white) the clipped noise no
longer averages to zero: at sigma 50 a black pixel's noisy values average 20 grey levels. A
denoiser, trained on unclipped noise, averages what it is given and so returns
z = E[clip(x + n)] = f(x) instead of x in flat dark areas. f is increasing in x for a known noise
model, so x = f^-1(z) undoes the bias: measured on the dark content group at sigma 50, 26.1 dB
before and 31.2 dB after, against 31.5 on unclipped input (docs/training.md).

Noise is the variance model a*x + b at intensity x in [0, 1] (AWGN: a = 0, b = sigma^2); the
streaming loop and offline denoising use it for AWGN, stbn.stabilize (which folds the same
correction into its inverse) for noise with a gain.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

_GRID = 4097  # tabulation of f over x in [0, 1]: 1/4096 steps, far below one grey level
_NEGLIGIBLE_VARIANCE = (0.05 / 255.0) ** 2  # noise too weak for clipping to bias anything


def expected_clipped(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """f(x) = E[clip(x + n, 0, 1)] for n ~ N(0, a*x + b), elementwise (float64)."""
    x = torch.as_tensor(np.asarray(x, np.float64))
    std = (a * x.clamp_min(0.0) + b).clamp_min(1e-24).sqrt()
    lo, hi = -x / std, (1.0 - x) / std
    pdf = lambda t: torch.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi)  # noqa: E731
    cdf_lo, cdf_hi = torch.special.ndtr(lo), torch.special.ndtr(hi)
    # E[Y 1(0<Y<1)] + P(Y >= 1) for Y = x + std * N(0, 1)
    inside = x * (cdf_hi - cdf_lo) + std * (pdf(lo) - pdf(hi))
    return (inside + (1.0 - cdf_hi)).numpy()


def _inverse(z: np.ndarray, a: float, b: float) -> np.ndarray:
    xs = np.linspace(0.0, 1.0, _GRID)
    # z below f(0) (or above f(1)) comes from a black (white) pixel: np.interp clamps to the ends
    return np.interp(z, expected_clipped(xs, a, b), xs)


def declip(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """A denoised float image in [0, 1] -> the same with the clipping bias removed (float32)."""
    if a * 0.5 + b <= _NEGLIGIBLE_VARIANCE:
        return np.asarray(image, np.float32)
    return _inverse(np.asarray(image, np.float64), a, b).astype(np.float32)


def declip_table(a: float, b: float) -> np.ndarray:
    """(256,) uint8 lookup table: denoised grey level -> grey level with the clipping bias removed."""
    if a * 0.5 + b <= _NEGLIGIBLE_VARIANCE:
        return np.arange(256, dtype=np.uint8)
    levels = np.arange(256, dtype=np.float64) / 255.0
    return np.clip(np.round(_inverse(levels, a, b) * 255.0), 0, 255).astype(np.uint8)


def apply_table(image: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[image]`` for uint8 images, 4x faster through OpenCV (0.4 ms at 640x360)."""
    return cv2.LUT(np.ascontiguousarray(image), table)
