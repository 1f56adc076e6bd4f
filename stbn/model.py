"""STBN: spatiotemporal blind-spot network with calibrated (nearest-neighbour) flow alignment."""

from __future__ import annotations

import enum

import torch
import torch.nn.functional as F
from torch import nn

from stbn.config import STBNConfig
from stbn.flow import build_flow
from stbn.layers import SRFE, BlindSpotBlock, DilatedResidual, DilatedStack, RingMean, pad_to_multiple
from stbn.posterior import posterior_mean
from stbn.warp import warp_nearest

Sigma = float | torch.Tensor
MEAN_INIT_SCALE = 0.1  # ring_mean or a student: the learnt correction of the mean starts small, not
# zero (zero would block the mean's gradient to every earlier layer)


def sigma_tensor(sigma: Sigma, noisy: torch.Tensor) -> torch.Tensor:
    """Normalise ``sigma`` to a tensor broadcastable to ``noisy`` (B, T, C, H, W).

    Accepts a float, a (B,) tensor (one level per clip) or a map of shape (B, T, 1|C, H, W).
    Values are on the [0, 1] scale (sigma_255 / 255); larger values are rejected as a likely
    unit mistake.
    """
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(float(sigma))
    sigma = sigma.to(device=noisy.device, dtype=noisy.dtype)
    if sigma.dim() == 0:
        sigma = sigma.view(1, 1, 1, 1, 1)
    elif sigma.dim() == 1:
        if sigma.shape[0] not in (1, noisy.shape[0]):
            raise ValueError(f"sigma has {sigma.shape[0]} entries for a batch of {noisy.shape[0]}")
        sigma = sigma.view(-1, 1, 1, 1, 1)
    elif sigma.dim() != 5 or sigma.shape[2] not in (1, noisy.shape[2]):
        raise ValueError(f"sigma map must be (B, T, 1|C, H, W) like the clip, got {tuple(sigma.shape)}")
    if not torch.compiler.is_compiling() and bool((sigma < 0).any() | (sigma > 1).any()):
        raise ValueError("sigma must be on the [0, 1] scale (e.g. 25/255), not 0..255")
    return sigma


def to_cells(x: torch.Tensor, s: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C*s*s, ceil(H/s), ceil(W/s)): each s x s cell's pixels as channels."""
    return x if s == 1 else F.pixel_unshuffle(pad_to_multiple(x, s, replicate=True), s)


def from_cells(x: torch.Tensor, s: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`to_cells`: (B, C*s*s, h, w) -> (B, C, height, width)."""
    return x if s == 1 else F.pixel_shuffle(x, s)[..., :height, :width]


def cell_flow(flow: torch.Tensor, s: int) -> torch.Tensor:
    """(B, 2, H, W) flow in pixels -> (B, 2, ceil(H/s), ceil(W/s)) flow in cells: each cell's mean
    displacement over s."""
    return flow if s == 1 else F.avg_pool2d(pad_to_multiple(flow, s, replicate=True), s) / s


class Direction(str, enum.Enum):
    """Which recurrent branch a step runs."""

    FORWARD = "forward"
    BACKWARD = "backward"


class STBN(nn.Module):
    """Bidirectional (or forward-only) blind-spot propagation + SRFE + Bayesian head.

    ``prior(noisy, sigma)`` -> (B, T, 9, H, W) prior mean and covariance factor;
    ``forward(noisy, sigma)`` -> (B, T, 3, H, W) posterior mean in [0, 1].
    The recurrent pieces (``propagate``, ``fuse``, ``flow_between``) are public so that the
    streaming denoiser can run them one frame at a time with the same weights.
    """

    def __init__(self, config: STBNConfig) -> None:
        super().__init__()
        self.config = config
        c, cin = config.channels, config.in_channels
        cells = config.unshuffle**2  # channels of a cell per frame channel
        stage_in = cin * cells + c + (cin if config.noise_map else 0)
        stage_a = (stage_in, c, c, config.stage_a_units, config.stage_a_mix, config.stage_a_tail, config.blind_spot)
        self.forward_rnn = BlindSpotBlock(*stage_a)
        self.backward_rnn = BlindSpotBlock(*stage_a) if config.bidirectional else None
        # Stage B is shared by both directions; h~ holds no information from the current frame,
        # so it may be read at the centre pixel through 1x1 and dilation-2 convs.
        self.fusion = DilatedStack(2 * c, config.stage_b_mid, c, config.stage_b_units)
        streams = 2 if config.bidirectional else 1
        self.srfe = SRFE(
            c,
            streams,
            config.srfe_channels,
            config.srfe_groups,
            config.srfe_units,
            config.srfe_conv_groups,
            config.srfe_reduce,
        )
        head_in = self.srfe.out_channels + (streams * c if config.srfe_skip else 0)
        head_in += cin * cells if config.head_reads_frame else 0
        self.head = DilatedStack(head_in, c, config.out_channels * cells, config.head_units)
        self.ring_mean = RingMean(config.in_channels) if config.ring_mean else None
        self.flow = build_flow(config.flow, config.flow_channels, config.flow_levels)
        self._init_denoiser()

    def _init_denoiser(self) -> None:
        """He (fan-in) initialisation with residual units starting as the identity.

        PyTorch's default conv init shrinks the signal by about 0.6 per layer, so through the
        ~25 layers between frame and prior mean the untrained mean is ~0.02 and Adam needs
        thousands of steps to scale it up (measured: 16 dB after 400 steps). With ``ring_mean``
        the mean rows of the last layer start small: the prior mean starts near the ring mean.
        """
        before_relu = set()  # convs whose output goes through a ReLU: gain sqrt(2), others 1
        for module in self.modules():
            if isinstance(module, nn.Sequential):
                layers = list(module)
                before_relu |= {id(a) for a, b in zip(layers, layers[1:]) if isinstance(b, nn.ReLU)}
            elif isinstance(module, BlindSpotBlock):
                before_relu |= {id(module.entry), id(module.masked), id(module.exit)}
            elif isinstance(module, DilatedResidual):
                before_relu.add(id(module.conv3))
        for name, module in self.named_modules():
            if name.startswith("flow") or not isinstance(module, nn.Conv2d):
                continue
            gain = "relu" if id(module) in before_relu else "linear"
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, DilatedResidual):
                nn.init.zeros_(module.conv1.weight)
        if self.config.ring_mean or not self.config.blind_spot:
            with torch.no_grad():
                # the mean's rows: in_channels per pixel of a cell (pixel_shuffle's channel-major order)
                self.head.exit.weight[: self.config.in_channels * self.config.unshuffle**2].mul_(MEAN_INIT_SCALE)

    # --- per-frame pieces -------------------------------------------------------------------

    def state_size(self, height: int, width: int) -> tuple[int, int]:
        """The (h, w) of the hidden states for frames of ``height`` x ``width``."""
        s = self.config.unshuffle
        return -(-height // s), -(-width // s)

    def flow_between(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) x 2 -> (B, 2, H, W) alignment flow from a to b; never trained by the
        denoising loss (the distillation loss trains the flow network on its own)."""
        return self.flow(a, b).detach()

    def propagate(
        self,
        direction: str,
        frame: torch.Tensor,
        noise_map: torch.Tensor | None,
        hidden: torch.Tensor | None,
        flow: torch.Tensor | None,
    ) -> torch.Tensor:
        """One recurrent step: (B, C, H, W) frame, (B, 2, H, W) flow, previous hidden (B, c, h, w)
        -> new hidden ((h, w) = :meth:`state_size`).

        ``hidden=None`` starts the direction (zero state, Stage A only). Otherwise the previous
        hidden state is pulled onto this frame by nearest-neighbour warping with ``flow``.
        """
        block = self.forward_rnn if Direction(direction) is Direction.FORWARD else self.backward_rnn
        if block is None:
            raise ValueError("this model is forward-only (bidirectional=False)")
        s = self.config.unshuffle
        frame = to_cells(frame, s)  # (B, C*s*s, h, w)
        b, _, h, w = frame.shape
        # A zero initial state is passed as its width: the entry conv skips it.
        aligned: torch.Tensor | int = self.config.channels
        if hidden is not None:
            aligned = hidden if flow is None else warp_nearest(hidden, cell_flow(flow, s))
        if not self.config.noise_map:
            out = block([frame, aligned])
        elif noise_map.shape[-2:] == (1, 1):
            # One level per frame: a per-channel offset after Stage A's entry conv, never H x W.
            out = block([frame, aligned], noise_map.expand(b, self.config.in_channels, 1, 1))
        else:
            noise_map = noise_map if s == 1 else F.avg_pool2d(pad_to_multiple(noise_map, s, replicate=True), s)
            out = block([frame, aligned, noise_map.expand(b, self.config.in_channels, h, w)])
        if isinstance(aligned, int):
            return out
        return self.fusion([out, aligned])

    def fuse(self, h_forward: torch.Tensor, h_backward: torch.Tensor | None, frame: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) hidden states and the (B, C, H, W) noisy frame -> (B, 9, H, W) prior for
        that frame. A blind-spot model reads the frame only through ``ring_mean`` (never at the
        pixel itself); a non-blind student returns its (B, C, H, W) estimate, a residual over it."""
        streams = [h_forward] if h_backward is None else [h_forward, h_backward]
        s = self.config.unshuffle
        parts = [self.srfe(streams), *streams] if self.config.srfe_skip else [self.srfe(streams)]
        if self.config.head_reads_frame:
            parts.append(to_cells(frame, s))
        prior = from_cells(self.head(parts), s, *frame.shape[-2:])
        if not self.config.blind_spot:
            return prior + frame  # a student's estimate: a residual over the noisy frame
        if self.ring_mean is None:
            return prior
        c = self.config.in_channels
        return torch.cat([prior[:, :c] + self.ring_mean(frame), prior[:, c:]], dim=1)

    # --- whole clips --------------------------------------------------------------------------

    def _check_clip(self, noisy: torch.Tensor) -> None:
        if noisy.dim() != 5 or noisy.shape[2] != self.config.in_channels:
            raise ValueError(f"expected a (B, T, {self.config.in_channels}, H, W) clip, got {tuple(noisy.shape)}")

    def _noise_map(self, sigma: torch.Tensor, t: int, noisy: torch.Tensor) -> torch.Tensor | None:
        if not self.config.noise_map:
            return None
        return sigma[:, min(t, sigma.shape[1] - 1)]  # (B|1, 1|C, 1|H, 1|W)

    def prior(self, noisy: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """(B, T, C, H, W) noisy clip in [0, 1] -> (B, T, 9, H, W) prior (mean + cov. factor); a
        non-blind student's (B, T, C, H, W) estimate, unclamped."""
        self._check_clip(noisy)
        sig = sigma_tensor(sigma, noisy)
        _, frames = noisy.shape[:2]
        frame = [noisy[:, t] for t in range(frames)]
        with torch.no_grad():
            flows_prev = [self.flow_between(frame[t], frame[t - 1]) for t in range(1, frames)]
            flows_next = (
                [self.flow_between(frame[t], frame[t + 1]) for t in range(frames - 1)]
                if self.config.bidirectional
                else []
            )
        h_f: list[torch.Tensor] = []
        for t in range(frames):
            h_f.append(
                self.propagate(
                    "forward",
                    frame[t],
                    self._noise_map(sig, t, noisy),
                    h_f[-1] if t else None,
                    flows_prev[t - 1] if t else None,
                )
            )
        h_b: list[torch.Tensor | None] = [None] * frames
        if self.config.bidirectional:
            state = None
            for t in range(frames - 1, -1, -1):
                state = self.propagate(
                    "backward",
                    frame[t],
                    self._noise_map(sig, t, noisy),
                    state,
                    flows_next[t] if t < frames - 1 else None,
                )
                h_b[t] = state
        return torch.stack([self.fuse(h_f[t], h_b[t], frame[t]) for t in range(frames)], dim=1)

    def forward(self, noisy: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """(B, T, C, H, W) noisy clip -> (B, T, C, H, W) posterior mean (a student's estimate),
        clamped to [0, 1]."""
        prior = self.prior(noisy, sigma)
        if not self.config.blind_spot:
            return prior.clamp(0.0, 1.0)
        return posterior_mean(prior, noisy, sigma_tensor(sigma, noisy))
