"""Backward warping out(p) = x(p + flow(p)), zeros outside the frame.

Nearest-neighbour warping copies original values, so warped noise keeps its distribution and
stays spatially independent ("calibrated" alignment); bilinear warping is a local low-pass
filter that lowers the variance and correlates neighbours, and is kept here only for images fed
to flow estimators and for the test that shows the difference.
"""

from __future__ import annotations

from typing import Any

import torch


def warp_nearest(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W), (B, 2, H, W) -> (B, C, H, W), nearest neighbour, zero padding.

    The same sampling as grid_sample(mode="nearest", align_corners=True), written as an index
    gather: 3x faster than ONNX Runtime's GridSample and a plain Gather for TensorRT. Pixel
    positions are integers added to the rounded flow, never floats: a runtime that computes in
    bf16 (OpenVINO on a CPU with AMX) cannot tell pixel 600 from 601 in a float.
    """
    b, c, h, w = x.shape
    if flow.dtype in (torch.float16, torch.bfloat16):  # pixel indices: fp16/bf16 round them past 2048/256
        flow = flow.float()
    shift, finite = _integer_flow(flow, torch.round)
    px = shift[:, 0] + torch.arange(w, dtype=torch.int64, device=flow.device).view(1, 1, w)
    py = shift[:, 1] + torch.arange(h, dtype=torch.int64, device=flow.device).view(1, h, 1)
    inside = finite & (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)  # (B, H, W)
    index = torch.where(inside, py * w + px, torch.zeros_like(px)).view(b, 1, h * w)
    out = torch.gather(x.reshape(b, c, h * w), 2, index.expand(b, c, h * w))
    return out.view(b, c, h, w) * inside.unsqueeze(1).to(x.dtype)


def _integer_flow(flow: torch.Tensor, to_integer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2, H, W) flow -> its ``to_integer`` (round, floor) as int64, and (B, H, W) where neither
    component is NaN (a NaN flow samples nothing). Bounded first: a huge or infinite flow only has
    to land outside the frame, and must not overflow the integer (no IsInf: TensorRT's parser
    lacks it)."""
    finite = ~torch.isnan(flow).any(dim=1)
    bound = 2.0 * (flow.shape[-1] + flow.shape[-2])
    safe = torch.where(finite.unsqueeze(1), flow, torch.zeros_like(flow)).clamp(-bound, bound)
    return to_integer(safe).to(torch.int64), finite


def warp_bilinear(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """(B, C, H, W), (B, 2, H, W) -> (B, C, H, W), bilinear; ``padding_mode`` "zeros" or "border".

    The same values as grid_sample(mode="bilinear", align_corners=True), written as four index
    gathers like ``warp_nearest``: plain Gather/Mul/Add for ONNX Runtime and TensorRT.
    """
    if padding_mode not in ("zeros", "border"):
        raise ValueError(f"padding_mode must be 'zeros' or 'border', got {padding_mode!r}")
    b, c, h, w = x.shape
    if flow.dtype in (torch.float16, torch.bfloat16):  # as in warp_nearest: indices in fp32
        flow = flow.float()
    # as in warp_nearest: integer pixel positions, the fraction taken from the (small) flow alone
    whole, finite = _integer_flow(flow, torch.floor)
    frac = torch.where(finite.unsqueeze(1), flow - whole.to(flow.dtype), torch.zeros_like(flow))
    x0 = whole[:, 0] + torch.arange(w, dtype=torch.int64, device=flow.device).view(1, 1, w)
    y0 = whole[:, 1] + torch.arange(h, dtype=torch.int64, device=flow.device).view(1, h, 1)
    fx, fy = frac[:, 0], frac[:, 1]
    if padding_mode == "border":  # a position past an edge samples the edge
        fx = torch.where((x0 < 0) | (x0 >= w - 1), torch.zeros_like(fx), fx)
        fy = torch.where((y0 < 0) | (y0 >= h - 1), torch.zeros_like(fy), fy)
        x0, y0 = x0.clamp(0, w - 1), y0.clamp(0, h - 1)
    fx, fy = fx.unsqueeze(1), fy.unsqueeze(1)
    flat = x.reshape(b, c, h * w)
    out = torch.zeros_like(x)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            cx, cy = x0 + dx, y0 + dy
            inside = finite & (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1)
            index = torch.where(inside, cy * w + cx, torch.zeros_like(cx)).view(b, 1, h * w)
            tap = torch.gather(flat, 2, index.expand(b, c, h * w)).view(b, c, h, w)
            out = out + tap * (wx * wy * inside.unsqueeze(1)).to(x.dtype)
    return out
