"""A compact coarse-to-fine flow network without a correlation layer (SPyNet-like).

Every level refines the upsampled coarser flow from [a, warp(b, flow), flow] with a few 3x3 convs.
No cost volume, no custom ops: it exports to ONNX and TensorRT as plain convs and grid_sample.
The finest level runs at 1/4 resolution (like PWC-Net's output), which keeps it cheap next to
the denoiser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stbn.flow.base import FlowEstimator, resize_flow
from stbn.warp import warp_bilinear


class _LevelRefiner(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(channels // 2, 2)
        self.net = nn.Sequential(
            nn.Conv2d(8, channels, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(channels, half, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(half, 2, 3, padding=1),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        warped = warp_bilinear(b, flow, padding_mode="border")
        return flow + self.net(torch.cat([a, warped, flow], dim=1))


class PyramidFlow(FlowEstimator):
    """(B, 3, H, W) x 2 -> (B, 2, H, W); ``levels`` scales from 1/4 down to 1/(4 * 2^(levels-1))."""

    def __init__(self, channels: int = 32, levels: int = 4) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError("PyramidFlow needs at least one level")
        self.levels = levels
        self.refiners = nn.ModuleList([_LevelRefiner(channels) for _ in range(levels)])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Python ints: every engine graph is static per resolution, and sizes traced as shape
        # arithmetic exported to ONNX resized differently from PyTorch (flow off by 0.3 px).
        h, w = int(a.shape[-2]), int(a.shape[-1])
        multiple = 4 * 2 ** (self.levels - 1)
        hr, wr = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        # Resize (not pad) to a multiple of the coarsest stride, as FloRNN does for PWC-Net.
        if (hr, wr) != (h, w):
            a = F.interpolate(a, size=(hr, wr), mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=(hr, wr), mode="bilinear", align_corners=False)
        pyramid = [(F.avg_pool2d(a, 4), F.avg_pool2d(b, 4))]
        for _ in range(self.levels - 1):
            pa, pb = pyramid[-1]
            pyramid.append((F.avg_pool2d(pa, 2), F.avg_pool2d(pb, 2)))
        coarse_a = pyramid[-1][0]
        flow = torch.zeros_like(coarse_a[:, :2])
        for level in range(self.levels - 1, -1, -1):
            pa, pb = pyramid[level]
            if flow.shape[-2:] != pa.shape[-2:]:
                flow = 2.0 * F.interpolate(flow, size=pa.shape[-2:], mode="bilinear", align_corners=False)
            flow = self.refiners[level](pa, pb, flow)
        return resize_flow(flow, h, w)
