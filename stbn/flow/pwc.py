"""PWC-Net (Sun et al. 2018) with a plain-PyTorch correlation.

Submodule names and shapes follow the public ``pytorch-pwc`` port (netExtractor, netTwo..netSix,
netRefiner) so its "default" weights, and the ``pwcnet.*`` entries of the STBN authors'
checkpoints, load by name. The 81-channel cost volume is the mean over feature channels of the
product with the second feature map shifted by (dy, dx) in [-4, 4]^2, channel (dy+4)*9 + (dx+4).
The wrapper resizes to multiples of 64, scales the 1/4-resolution output by 20 and resizes it
back, as FloRNN does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stbn.flow.base import FlowEstimator, resize_flow

_MAX_DISPLACEMENT = 4


def correlation(one: torch.Tensor, two: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) x 2 -> (B, 81, H, W) mean-over-channels cost volume."""
    d = _MAX_DISPLACEMENT
    h, w = one.shape[-2:]
    padded = F.pad(two, (d, d, d, d))
    volumes = [
        (one * padded[:, :, dy : dy + h, dx : dx + w]).mean(dim=1, keepdim=True)
        for dy in range(2 * d + 1)
        for dx in range(2 * d + 1)
    ]
    return torch.cat(volumes, dim=1)


def _backwarp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear backward warp with the port's conventions (align_corners=False grid, validity mask)."""
    _, _, h, w = flow.shape
    xs = (torch.arange(w, dtype=flow.dtype, device=flow.device) * 2.0 + 1.0) / w - 1.0
    ys = (torch.arange(h, dtype=flow.dtype, device=flow.device) * 2.0 + 1.0) / h - 1.0
    gx = xs.view(1, 1, w) + flow[:, 0] * (2.0 / (w - 1.0))
    gy = ys.view(1, h, 1) + flow[:, 1] * (2.0 / (h - 1.0))
    grid = torch.stack([gx, gy], dim=-1)
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = (out[:, -1:] > 0.999).to(out.dtype)
    return out[:, :-1] * mask


def _conv_lrelu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation), nn.LeakyReLU(0.1)]


class _Extractor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        widths = [3, 16, 32, 64, 96, 128, 196]
        names = ["netOne", "netTwo", "netThr", "netFou", "netFiv", "netSix"]
        for name, cin, cout in zip(names, widths[:-1], widths[1:]):
            layers = _conv_lrelu(cin, cout, stride=2) + _conv_lrelu(cout, cout) + _conv_lrelu(cout, cout)
            self.add_module(name, nn.Sequential(*layers))
        self.names = names

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for name in self.names:
            x = getattr(self, name)(x)
            features.append(x)
        return features


_DENSE = (128, 128, 96, 64, 32)
_CURRENT = {2: 81 + 32 + 4, 3: 81 + 64 + 4, 4: 81 + 96 + 4, 5: 81 + 128 + 4, 6: 81}
_BACKWARP_SCALE = {2: 5.0, 3: 2.5, 4: 1.25, 5: 0.625}


class _Decoder(nn.Module):
    def __init__(self, level: int) -> None:
        super().__init__()
        current = _CURRENT[level]
        self.level = level
        if level < 6:
            previous = _CURRENT[level + 1]
            self.netUpflow = nn.ConvTranspose2d(2, 2, 4, 2, 1)
            self.netUpfeat = nn.ConvTranspose2d(previous + sum(_DENSE), 2, 4, 2, 1)
        cin = current
        for name, cout in zip(["netOne", "netTwo", "netThr", "netFou", "netFiv"], _DENSE):
            self.add_module(name, nn.Sequential(*_conv_lrelu(cin, cout)))
            cin += cout
        self.netSix = nn.Sequential(nn.Conv2d(cin, 2, 3, 1, 1))

    def forward(
        self, one: torch.Tensor, two: torch.Tensor, previous: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if previous is None:
            feat = F.leaky_relu(correlation(one, two), 0.1)
        else:
            flow = self.netUpflow(previous[0])
            up_feat = self.netUpfeat(previous[1])
            volume = F.leaky_relu(correlation(one, _backwarp(two, flow * _BACKWARP_SCALE[self.level])), 0.1)
            feat = torch.cat([volume, one, flow, up_feat], dim=1)
        for name in ["netOne", "netTwo", "netThr", "netFou", "netFiv"]:
            feat = torch.cat([getattr(self, name)(feat), feat], dim=1)
        return self.netSix(feat), feat


class _Refiner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        cin = _CURRENT[2] + sum(_DENSE)
        spec = [(cin, 128, 1), (128, 128, 2), (128, 128, 4), (128, 96, 8), (96, 64, 16), (64, 32, 1)]
        layers: list[nn.Module] = []
        for a, b, d in spec:
            layers += _conv_lrelu(a, b, dilation=d)
        layers.append(nn.Conv2d(32, 2, 3, 1, 1))
        self.netMain = nn.Sequential(*layers)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.netMain(feat)


class PWCNet(FlowEstimator):
    """(B, 3, H, W) x 2 -> (B, 2, H, W) flow from the first frame to the second (9,374,274 params)."""

    def __init__(self) -> None:
        super().__init__()
        self.netExtractor = _Extractor()
        self.netTwo = _Decoder(2)
        self.netThr = _Decoder(3)
        self.netFou = _Decoder(4)
        self.netFiv = _Decoder(5)
        self.netSix = _Decoder(6)
        self.netRefiner = _Refiner()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h, w = int(a.shape[-2]), int(a.shape[-1])  # static per engine (see PyramidFlow.forward)
        h64, w64 = -(-h // 64) * 64, -(-w // 64) * 64
        a = F.interpolate(a, size=(h64, w64), mode="bilinear", align_corners=False)
        b = F.interpolate(b, size=(h64, w64), mode="bilinear", align_corners=False)
        fa, fb = self.netExtractor(a), self.netExtractor(b)
        estimate = None
        for index, decoder in zip(range(5, 0, -1), [self.netSix, self.netFiv, self.netFou, self.netThr, self.netTwo]):
            estimate = decoder(fa[index], fb[index], estimate)
        flow, feat = estimate
        return pwc_output_to_flow(flow + self.netRefiner(feat), h, w, (h64, w64))


def pwc_output_to_flow(raw: torch.Tensor, height: int, width: int, network_size: tuple[int, int]) -> torch.Tensor:
    """PWC-Net's 1/4-grid output -> (B, 2, height, width) flow in pixels of the caller's frame.

    Times 20 the output counts pixels of the network's input (``network_size``, the frame resized
    to multiples of 64), at any grid; only the resize from that input back to the frame rescales.
    """
    return resize_flow(20.0 * raw, height, width, units=network_size)
