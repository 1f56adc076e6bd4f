"""Bayesian blind-spot head: Gaussian NLL self-supervision and the posterior mean (sRGB, 3x3).

The 9 output channels are the prior mean mu (3) and six entries v0..v5 of a row-reversed
lower-triangular factor A = [[v0, v1, v2], [v3, v4, 0], [v5, 0, 0]]; the prior covariance is
A^T A. Noise variances are per channel (diagonal), so constant sigma, per-sample sigma and
signal-dependent (Poisson-Gaussian) sigma maps share one code path.
"""

from __future__ import annotations

import torch

PRIOR_EPS = 1e-5  # added to the prior covariance diagonal, as in the reference


def _prior_covariance(factor: torch.Tensor) -> torch.Tensor:
    """(..., 6, H, W) factor entries -> (..., H, W, 3, 3) covariance A^T A."""
    v = _to_last(factor)  # (..., H, W, 6)
    zero = torch.zeros_like(v[..., 0])
    rows = torch.stack(
        [
            torch.stack([v[..., 0], v[..., 1], v[..., 2]], dim=-1),
            torch.stack([v[..., 3], v[..., 4], zero], dim=-1),
            torch.stack([v[..., 5], zero, zero], dim=-1),
        ],
        dim=-2,
    )  # (..., H, W, 3, 3)
    return rows.transpose(-1, -2) @ rows


def _det_and_adjugate(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form determinant and adjugate of (..., 3, 3) matrices (export-friendly, no LAPACK)."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co00, co01, co02 = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * co00 + b * co01 + c * co02
    adj = torch.stack(
        [
            torch.stack([co00, c * h - b * i, b * f - c * e], dim=-1),
            torch.stack([co01, a * i - c * g, c * d - a * f], dim=-1),
            torch.stack([co02, b * g - a * h, a * e - b * d], dim=-1),
        ],
        dim=-2,
    )
    return det, adj


def _to_last(x: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) -> (..., H, W, C); positive dims, which the ONNX exporter needs."""
    d = x.dim()
    return x.movedim(d - 3, d - 1)


def _to_channels(x: torch.Tensor) -> torch.Tensor:
    """(..., H, W, C) -> (..., C, H, W)."""
    d = x.dim()
    return x.movedim(d - 1, d - 3)


def _diagonal(values: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) diagonal matrices (diag_embed has no ONNX export)."""
    return values.unsqueeze(-1) * torch.eye(3, dtype=values.dtype, device=values.device)


def _split(prior: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if prior.shape[-3] != 9:
        raise ValueError(f"expected 9 prior channels (mean + covariance factor), got {prior.shape[-3]}")
    return prior[..., :3, :, :], prior[..., 3:, :, :]


def _noise_variance(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast sigma (any shape broadcastable to ``like``, (..., 3|1, H, W)) to (..., H, W, 3)."""
    return _to_last((sigma.to(like.dtype) ** 2).expand_as(like))


def gaussian_nll(prior: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Mean over pixels of 1/2 r^T S^-1 r + 1/2 log det S, S = A^T A + (sigma^2 + 1e-5) I.

    prior (..., 9, H, W); noisy (..., 3, H, W); sigma broadcastable to noisy, on the [0, 1] scale.
    """
    mean, factor = _split(prior)
    cov = _prior_covariance(factor)
    var = _noise_variance(sigma, noisy) + PRIOR_EPS
    cov = cov + _diagonal(var)
    det, adj = _det_and_adjugate(cov)
    r = _to_last(noisy - mean).unsqueeze(-1)  # (..., H, W, 3, 1)
    mahalanobis = (r.transpose(-1, -2) @ adj @ r).squeeze(-1).squeeze(-1) / det
    return 0.5 * (mahalanobis + torch.log(det)).mean()


def posterior_mean(prior: torch.Tensor, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x = (P^-1 + N^-1)^-1 (P^-1 mu + N^-1 y) = mu + P (P + N)^-1 (y - mu), clamped to [0, 1].

    P = A^T A + 1e-5 I, N = diag(sigma^2). The second form is the same value and stays finite
    when sigma -> 0 (then x -> y).
    """
    mean, factor = _split(prior)
    p = _prior_covariance(factor)
    p = p + PRIOR_EPS * torch.eye(3, dtype=p.dtype, device=p.device)
    total = p + _diagonal(_noise_variance(sigma, noisy))
    det, adj = _det_and_adjugate(total)
    r = _to_last(noisy - mean).unsqueeze(-1)  # (..., H, W, 3, 1)
    correction = (p @ adj @ r).squeeze(-1) / det.unsqueeze(-1)
    return (mean + _to_channels(correction)).clamp(0.0, 1.0)
