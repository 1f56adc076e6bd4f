"""Optical flow behind one interface: ``flow = estimator(a, b)`` gives, for every pixel of ``a``,
its displacement (x, y) in ``b``, in pixels, shape (B, 2, H, W). Inputs are (B, 3, H, W) frames on
the [0, 1] scale (noisy, not clipped)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from stbn.config import FlowKind
from stbn.flow.base import FlowEstimator, ZeroFlow
from stbn.flow.pwc import PWCNet
from stbn.flow.pyramid import PyramidFlow

__all__ = ["FlowEstimator", "PWCNet", "PyramidFlow", "ZeroFlow", "build_flow"]


FLOW_BUILDERS: dict[FlowKind, Callable[[int, int], nn.Module]] = {
    FlowKind.PYRAMID: lambda channels, levels: PyramidFlow(channels=channels, levels=levels),
    FlowKind.PWC: lambda channels, levels: PWCNet(),
    FlowKind.ZERO: lambda channels, levels: ZeroFlow(),
}


def build_flow(kind: FlowKind | str, channels: int = 32, levels: int = 4) -> nn.Module:
    """The flow estimator of ``kind`` (``channels`` and ``levels`` shape the pyramid network)."""
    return FLOW_BUILDERS[FlowKind(kind)](channels, levels)
