"""Building blocks that keep the blind-spot parity rule.

After the centre-masked 3x3 conv, every layer may only connect pixels whose offsets are multiples
of 2 in both axes (1x1 convs, dilation-2 convs, the 4x4 patch-unshuffle), so the output at pixel p
never sees the current frame at p or at any offset whose coordinates are both even.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class CentreMaskedConv2d(nn.Conv2d):
    """3x3 conv whose centre tap is zero on every forward pass (the blind spot)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)
        mask = torch.ones(1, 1, 3, 3)
        mask[..., 1, 1] = 0.0
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=1)


class RingMean(nn.Module):
    """(B, C, H, W) -> (B, C, H, W) mean of the 8 neighbours of each pixel (never the pixel itself).

    Offsets (+-1, 0), (0, +-1), (+-1, +-1) have odd coordinates, so the parity rule holds. Borders
    average the neighbours that exist (zero padding, divided by the count). The kernels are fixed
    buffers (not saved in checkpoints), so exported graphs hold them as plain Conv initializers.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        ring = torch.ones(1, 1, 3, 3)
        ring[..., 1, 1] = 0.0
        self.channels = channels
        self.register_buffer("kernel", ring.repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("count_kernel", ring, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.conv2d(x, self.kernel, padding=1, groups=self.channels)
        count = F.conv2d(torch.ones_like(x[:1, :1]), self.count_kernel, padding=1)
        return total / count


class SplitInputConv(nn.Conv2d):
    """1x1 conv over the channel concatenation of ``parts``, computed part by part and summed, so
    the concatenated tensor is never built (in ONNX Runtime a Concat also breaks the blocked
    NCHWc layout between convs). A part given as an int stands for that many all-zero channels
    (a zero initial hidden state) and costs nothing. Trailing input channels may instead come as
    ``constant`` maps (B, k, 1, 1) (the noise level): their contribution is a per-channel offset
    added to the output, never expanded to H x W."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, parts: Sequence[torch.Tensor | int], constant: torch.Tensor | None = None) -> torch.Tensor:
        # Python ints: static per engine graph, so the weight slices export as constants.
        widths = [p if isinstance(p, int) else int(p.shape[1]) for p in parts]
        given = sum(widths) + (0 if constant is None else constant.shape[1])
        if all(isinstance(p, int) for p in parts) or given != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels, got {given}")
        out, start = None, 0
        for part, width in zip(parts, widths):
            if not isinstance(part, int):
                weight = self.weight if width == self.in_channels else self.weight[:, start : start + width]
                term = F.conv2d(part, weight, self.bias if out is None else None)
                out = term if out is None else out + term
            start += width
        if constant is None:
            return out
        # A broadcast add rather than a computed conv bias: TensorRT's ONNX parser wants Conv
        # weights and biases as initializers.
        shift = constant.flatten(1) @ self.weight[:, -constant.shape[1] :, 0, 0].t()  # (B, out)
        return out + shift[:, :, None, None]


class DilatedResidual(nn.Module):
    """x + Conv1x1(ReLU(Conv3x3_dilation2(x))): the authors' DCl / RCAB unit."""

    def __init__(self, channels: int, conv_groups: int = 1) -> None:
        super().__init__()
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=2, dilation=2, groups=conv_groups)
        self.conv1 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv3(x)))


class BlindSpotBlock(nn.Module):
    """Stage A of the BSA block (the authors' stride-2 DBSNl branch).

    (B, in, H, W) -> (B, out, H, W); output at p is independent of the input at p and at every
    offset with both coordinates even. ``mix`` 1x1 layers follow the masked conv and the tail has
    ``tail`` 1x1 layers (the reference: 2 and 3).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        units: int,
        mix: int = 2,
        tail: int = 3,
        blind: bool = True,
    ) -> None:
        super().__init__()
        if tail < 1:
            raise ValueError("BlindSpotBlock needs at least one tail layer")
        c = channels
        self.entry = SplitInputConv(in_channels, c)
        # blind=False (a distilled student): the same block with a plain 3x3 conv.
        self.masked = CentreMaskedConv2d(c, c) if blind else nn.Conv2d(c, c, 3, padding=1)
        self.mix = nn.Sequential(*[layer for _ in range(mix) for layer in (nn.Conv2d(c, c, 1), nn.ReLU())])
        self.body = nn.Sequential(*[DilatedResidual(c) for _ in range(units)])
        self.exit = nn.Conv2d(c, c, 1)
        half = max(c // 2, 1)
        widths = [c] + [half] * (tail - 1) + [out_channels]
        layers: list[nn.Module] = []
        for i in range(tail):
            layers += [nn.Conv2d(widths[i], widths[i + 1], 1)] + ([nn.ReLU()] if i < tail - 1 else [])
        self.tail = nn.Sequential(*layers)

    def forward(self, parts: Sequence[torch.Tensor | int], constant: torch.Tensor | None = None) -> torch.Tensor:
        """``parts``: the inputs in channel order (concatenated by the entry conv); ``constant``:
        (B, k, 1, 1) levels standing for the last k input channels (see SplitInputConv)."""
        x = F.relu(self.masked(F.relu(self.entry(parts, constant))))
        x = self.mix(x)
        x = F.relu(self.exit(self.body(x)))
        return self.tail(x)


class DilatedStack(nn.Module):
    """1x1 (no bias) -> units x DilatedResidual -> 1x1 (no bias): Stage B and the output head."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, units: int) -> None:
        super().__init__()
        self.entry = SplitInputConv(in_channels, mid_channels, bias=False)
        self.body = nn.Sequential(*[DilatedResidual(mid_channels) for _ in range(units)])
        self.exit = nn.Conv2d(mid_channels, out_channels, 1, bias=False)

    def forward(self, parts: Sequence[torch.Tensor | int]) -> torch.Tensor:
        """``parts``: the inputs in channel order, concatenated by the entry conv."""
        return self.exit(self.body(self.entry(parts)))


def pad_to_multiple(x: torch.Tensor, s: int, replicate: bool = False) -> torch.Tensor:
    """(B, C, H, W) padded at the bottom and right up to multiples of s: zeros, or the edge rows and
    columns repeated (``replicate``)."""
    pad_h, pad_w = (-x.shape[-2]) % s, (-x.shape[-1]) % s
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate" if replicate else "constant")


def patch_unshuffle(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), H and W multiples of 4.

    Each 4x4 tile holds four 2x2 sub-blocks (a, b); the sub-block goes to channel c*4 + 2a + b and
    the position (u, v) inside it stays spatial: out[c*4+2a+b, 2i+u, 2j+v] = x[c, 4i+2a+u, 4j+2b+v].
    Channel mixing then only combines original offsets that are multiples of 2.
    """
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // 4, 2, 2, w // 4, 2, 2)  # (B, C, i, a, u, j, b, v)
    x = x.permute(0, 1, 3, 6, 2, 4, 5, 7)  # (B, C, a, b, i, u, j, v)
    return x.reshape(b, c * 4, h // 2, w // 2)


def patch_shuffle(x: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`patch_unshuffle`: (B, 4C, H/2, W/2) -> (B, C, H, W)."""
    b, c4, h2, w2 = x.shape
    c = c4 // 4
    x = x.reshape(b, c, 2, 2, h2 // 2, 2, w2 // 2, 2)  # (B, C, a, b, i, u, j, v)
    x = x.permute(0, 1, 4, 2, 5, 6, 3, 7)  # (B, C, i, a, u, j, b, v)
    return x.reshape(b, c, h2 * 2, w2 * 2)


class ResidualGroup(nn.Module):
    def __init__(self, channels: int, units: int, conv_groups: int) -> None:
        super().__init__()
        self.units = nn.Sequential(*[DilatedResidual(channels, conv_groups) for _ in range(units)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.units(x)


class SRFE(nn.Module):
    """Spatial Receptive Field Expansion: fuses h_f and h_b in the patch-unshuffled domain.

    streams x (B, C, H, W) -> (B, out_channels, H, W). With ``reduce`` > 0 a 1x1 conv first maps
    the concatenated streams to ``reduce`` channels at full resolution (parity-safe: it mixes
    channels of one pixel), so the unshuffle, the SRFE head and the shuffle move fewer channels;
    the output then has ``reduce`` channels, else C. Pads H, W to multiples of 4 (bottom/right)
    and crops back.
    """

    def __init__(
        self, channels: int, streams: int, width: int, groups: int, units: int, conv_groups: int, reduce: int = 0
    ) -> None:
        super().__init__()
        self.streams = streams
        self.reduce = SplitInputConv(channels * streams, reduce) if reduce else None
        unshuffled = 4 * (reduce or channels * streams)
        self.out_channels = reduce or channels
        self.head = nn.Conv2d(unshuffled, width, 3, padding=2, dilation=2)
        self.body = nn.Sequential(*[ResidualGroup(width, units, conv_groups) for _ in range(groups)])
        self.tail = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=2, dilation=2),
            nn.Conv2d(width, width, 1),
            nn.Conv2d(width, 4 * self.out_channels, 1),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        h, w = features[0].shape[-2:]
        if self.reduce is not None:
            features = [self.reduce(features)]
        x = torch.cat([patch_unshuffle(pad_to_multiple(f, 4)) for f in features], dim=1)
        x = self.tail(self.body(self.head(x)))
        return patch_shuffle(x)[..., :h, :w]
