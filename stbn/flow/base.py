"""The flow interface and the zero-flow estimator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FlowEstimator(nn.Module):
    """Base class: ``forward(a, b)`` -> (B, 2, H, W) flow from ``a`` to ``b`` in pixels (x, y)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class ZeroFlow(FlowEstimator):
    """No motion: every pixel stays where it is (for tests and static cameras)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(a[:, :2])


def resize_flow(
    flow: torch.Tensor, height: int, width: int, units: tuple[int, int] | None = None
) -> torch.Tensor:
    """Bilinearly resize a (B, 2, h, w) pixel flow to (height, width) and rescale x and y.

    ``units`` is the (H, W) of the frame whose pixels the flow values count (default: the flow's
    own grid). PWC-Net's output lives on a 1/4 grid but counts pixels of its (padded) input.
    """
    h, w = units or flow.shape[-2:]
    up = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)
    scale = torch.tensor([width / w, height / h], dtype=flow.dtype, device=flow.device).view(1, 2, 1, 1)
    return up * scale
