"""Optical flow behind one interface: ``flow = estimator(a, b)`` gives, for every pixel of ``a``,
its displacement (x, y) in ``b``, in pixels, shape (B, 2, H, W). Inputs are (B, 3, H, W) frames on
the [0, 1] scale (noisy, not clipped)."""

from __future__ import annotations

from torch import nn

from stbn.flow.base import FlowEstimator, ZeroFlow
from stbn.flow.pwc import PWCNet
from stbn.flow.pyramid import PyramidFlow

__all__ = ["FlowEstimator", "PWCNet", "PyramidFlow", "ZeroFlow", "build_flow"]


def build_flow(kind: str, channels: int = 32, levels: int = 4) -> nn.Module:
    """The flow estimator named ``kind`` ("pyramid", "pwc" or "zero")."""
    if kind == "pyramid":
        return PyramidFlow(channels=channels, levels=levels)
    if kind == "pwc":
        return PWCNet()
    if kind == "zero":
        return ZeroFlow()
    raise ValueError(f"unknown flow kind {kind!r}; choose pyramid, pwc or zero")
