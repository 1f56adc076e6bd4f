"""Backward warping out(p) = x(p + flow(p)), zeros outside the frame.

Nearest-neighbour warping copies original values, so warped noise keeps its distribution and
stays spatially independent ("calibrated" alignment); bilinear warping is a local low-pass
filter that lowers the variance and correlates neighbours, and is kept here only for images fed
to flow estimators and for the test that shows the difference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) pixel flow (x, y) -> (B, H, W, 2) grid in [-1, 1], align_corners=True."""
    _, _, h, w = flow.shape
    # arange, not linspace: keeps the grid shape symbolic under export.
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], dim=-1)


def warp_nearest(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), (B, 2, H, W) -> (B, C, H, W), nearest neighbour, zero padding.

    The same sampling as grid_sample(mode="nearest", align_corners=True) (round half to even),
    written as an index gather: 3x faster than ONNX Runtime's GridSample and a plain Gather
    for TensorRT.
    """
    b, c, h, w = x.shape
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    px = torch.round(xs + flow[:, 0])
    py = torch.round(ys + flow[:, 1])
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)  # (B, H, W); False for NaN
    index = torch.where(inside, py * w + px, torch.zeros_like(px)).to(torch.int64).view(b, 1, h * w)
    out = torch.gather(x.reshape(b, c, h * w), 2, index.expand(b, c, h * w))
    return out.view(b, c, h, w) * inside.unsqueeze(1).to(x.dtype)


def warp_bilinear(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """(B, C, H, W), (B, 2, H, W) -> (B, C, H, W), bilinear."""
    return F.grid_sample(x, _sampling_grid(flow), mode="bilinear", padding_mode=padding_mode, align_corners=True)
