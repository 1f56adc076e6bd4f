"""Synthetic noise for training: AWGN with a per-sample sigma, and Poisson-Gaussian. Float, never clipped."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_sigmas(batch: int, sigma_range: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """(batch,) sigmas on the [0, 1] scale drawn uniformly from ``sigma_range`` (0..255 scale)."""
    lo, hi = sigma_range
    return (lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)).float() / 255.0


def add_gaussian(clean: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """clean (B, ...) + sigma_b * N(0, 1), unclipped; sigma (B,) on the [0, 1] scale."""
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    return clean + sigma.view(-1, *([1] * (clean.dim() - 1))).to(clean.dtype) * noise


def add_poisson_gaussian(
    clean: torch.Tensor, gain: torch.Tensor, sigma: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Heteroscedastic Gaussian approximation of Poisson-Gaussian noise: variance a*x + sigma^2.

    gain (B,) and sigma (B,) on the [0, 1] scale; the result is unclipped.
    """
    shape = (-1, *([1] * (clean.dim() - 1)))
    var = gain.view(shape) * clean.clamp(min=0.0) + sigma.view(shape) ** 2
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    return clean + var.sqrt() * noise


def poisson_gaussian_sigma_map(noisy: torch.Tensor, gain: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) per-pixel noise std for a*x + sigma^2, with x estimated from the noisy clip
    by a 5x5 box filter (clean frames are never used to build the model's inputs)."""
    b, t, c, h, w = noisy.shape
    local = F.avg_pool2d(noisy.reshape(b * t, c, h, w), 5, stride=1, padding=2, count_include_pad=False)
    local = local.reshape(b, t, c, h, w).clamp(0.0, 1.0)
    shape = (-1, 1, 1, 1, 1)
    return (gain.view(shape) * local + sigma.view(shape) ** 2).sqrt()
