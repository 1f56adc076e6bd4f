"""The streaming step as small stateless graphs with all state as explicit inputs and outputs.

Streaming (stbn.streaming) strings these together one frame at a time; every backend runs
the same graphs (eager PyTorch, ONNX Runtime, TensorRT), each with static shapes per
resolution and independent of the look-ahead L, so flushing the last frames needs no extra
graphs.

Noise is given per frame as ``noise = (a, b)`` of shape (1, 2): variance(x) = a*x + b on the
[0, 1] scale. AWGN is a = 0, b = sigma^2; Poisson-Gaussian has a > 0. The network's noise map
is the frame's level sqrt(a * mean(frame) + b) (a constant map, so it cannot carry the centre
pixel around the blind spot) and the posterior uses a*clamp(mu)+b at each pixel, evaluated at
the prior mean, which never sees the pixel it explains. The streaming loop itself passes a = 0:
signal-dependent noise is stabilised to one level before the graphs (stbn.stabilize), which
measured better than the per-pixel variance (+0.4 dB on a shot-noise clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from stbn.model import STBN
from stbn.posterior import posterior_mean


@dataclass(frozen=True)
class GraphSpec:
    """One step graph's contract: its name and the names of its inputs and outputs, in order.

    Every backend, the exporter and the streaming loop read the graphs from :data:`GRAPHS`.
    """

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    bidirectional_only: bool = False  # backward graphs exist only for bidirectional models

    def inputs_for(self, bidirectional: bool) -> tuple[str, ...]:
        # a causal model's fuse reads only the forward state
        return self.inputs if bidirectional or self.name != "fuse" else self.inputs[:-1]


GRAPHS: dict[str, GraphSpec] = {
    spec.name: spec
    for spec in (
        GraphSpec("prepare", ("frame_u8",), ("frame_out",)),
        GraphSpec("pair_flows", ("prev", "cur"), ("flow_to_prev", "flow_to_next")),
        GraphSpec("flow_to_prev", ("prev", "cur"), ("flow_to_prev",)),
        GraphSpec("forward_start", ("frame", "noise"), ("hidden_out",)),
        GraphSpec("forward", ("frame", "noise", "hidden", "flow"), ("hidden_out",)),
        GraphSpec("backward_start", ("frame", "noise"), ("hidden_out",), bidirectional_only=True),
        GraphSpec("backward", ("frame", "noise", "hidden", "flow"), ("hidden_out",), bidirectional_only=True),
        GraphSpec("fuse", ("frame", "noise", "h_forward", "h_backward"), ("image_u8",)),
    )
}


def graph_names(bidirectional: bool) -> tuple[str, ...]:
    return tuple(name for name, spec in GRAPHS.items() if bidirectional or not spec.bidirectional_only)


def example_inputs(model: STBN, height: int, width: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Example inputs of every graph of ``model`` at one resolution, by input name (export, build)."""
    c = model.config.channels
    frame = torch.rand(1, 3, height, width)
    hidden = torch.rand(1, c, *model.state_size(height, width))
    by_name = {
        "frame_u8": torch.randint(0, 256, (height, width, 3), dtype=torch.uint8),
        "frame": frame,
        "prev": frame,
        "cur": frame.clone(),
        "noise": torch.tensor([[0.0, (25 / 255) ** 2]]),
        "hidden": hidden,
        "h_forward": hidden,
        "h_backward": hidden.clone(),
        "flow": torch.zeros(1, 2, height, width),
    }
    bidirectional = model.config.bidirectional
    return {
        name: tuple(by_name[i] for i in GRAPHS[name].inputs_for(bidirectional)) for name in graph_names(bidirectional)
    }


def noise_level(frame: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) frame, (1, 2) noise -> (1, 1, 1, 1) sigma for the network's noise map."""
    mean = frame.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
    a, b = noise[:, 0].view(-1, 1, 1, 1), noise[:, 1].view(-1, 1, 1, 1)
    return (a * mean + b).clamp_min(0.0).sqrt()


class Prepare(nn.Module):
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1] (the conversion runs on the device)."""

    def forward(self, frame_u8: torch.Tensor) -> torch.Tensor:
        return frame_u8.permute(2, 0, 1).unsqueeze(0).float() * (1.0 / 255.0)


class PairFlows(nn.Module):
    """(prev, cur) -> (flow cur->prev, flow prev->cur), both (1, 2, H, W); one batched call."""

    def __init__(self, model: STBN) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flows = self.model.flow_between(torch.cat([cur, prev]), torch.cat([prev, cur]))
        return flows[:1], flows[1:]


class FlowToPrev(nn.Module):
    """(prev, cur) -> flow cur->prev (1, 2, H, W) alone: the forward direction's flow, for causal
    streaming (L = 0) and forward-only models, where no backward step reads prev->cur."""

    def __init__(self, model: STBN) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        return self.model.flow_between(cur, prev)


class PropagateStart(nn.Module):
    """First frame of a direction: zero hidden state, Stage A only. -> (1, c, h, w), (h, w) the model's
    ``state_size``."""

    def __init__(self, model: STBN, direction: str) -> None:
        super().__init__()
        self.model, self.direction = model, direction

    def forward(self, frame: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.model.propagate(self.direction, frame, noise_level(frame, noise), None, None)


class Propagate(nn.Module):
    """One recurrent step: warp the previous hidden state with ``flow`` and fuse. -> (1, c, h, w), (h, w)
    the model's ``state_size``."""

    def __init__(self, model: STBN, direction: str) -> None:
        super().__init__()
        self.model, self.direction = model, direction

    def forward(
        self, frame: torch.Tensor, noise: torch.Tensor, hidden: torch.Tensor, flow: torch.Tensor
    ) -> torch.Tensor:
        return self.model.propagate(self.direction, frame, noise_level(frame, noise), hidden, flow)


class Fuse(nn.Module):
    """(h_f[, h_b], frame, noise) -> (H, W, 3) uint8 posterior mean of that frame."""

    def __init__(self, model: STBN) -> None:
        super().__init__()
        self.model = model

    def forward(self, frame: torch.Tensor, noise: torch.Tensor, *hidden: torch.Tensor) -> torch.Tensor:
        h_f, h_b = hidden[0], (hidden[1] if len(hidden) > 1 else None)
        prior = self.model.fuse(h_f, h_b, frame)  # (1, 9, H, W); a student's (1, 3, H, W) estimate
        if self.model.config.blind_spot:
            a, b = noise[:, 0].view(-1, 1, 1, 1), noise[:, 1].view(-1, 1, 1, 1)
            variance = a * prior[:, :3].clamp(0.0, 1.0) + b
            out = posterior_mean(prior, frame, variance.clamp_min(0.0).sqrt())
        else:
            out = prior.clamp(0.0, 1.0)
        return (out[0].permute(1, 2, 0) * 255.0 + 0.5).to(torch.uint8)


def step_graphs(model: STBN) -> dict[str, nn.Module]:
    """The modules of :data:`GRAPHS` for ``model`` (shared weights), in that order."""
    modules: dict[str, nn.Module] = {
        "prepare": Prepare(),
        "pair_flows": PairFlows(model),
        "flow_to_prev": FlowToPrev(model),
        "forward_start": PropagateStart(model, "forward"),
        "forward": Propagate(model, "forward"),
        "fuse": Fuse(model),
    }
    if model.config.bidirectional:
        modules["backward_start"] = PropagateStart(model, "backward")
        modules["backward"] = Propagate(model, "backward")
    return {name: modules[name] for name in graph_names(model.config.bidirectional)}


class EagerRunner:
    """The step graphs run eagerly in fp32 on the model's device: the reference every backend is
    held to, and what evaluation streams with (a :class:`stbn.streaming.StepRunner`)."""

    name = "eager"

    def __init__(self, model: STBN) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.graphs = step_graphs(self.model)
        self.resolution: tuple[int, int] | None = None

    @property
    def bidirectional(self) -> bool:
        return self.model.config.bidirectional

    def build(self, height: int, width: int) -> None:
        self.resolution = (height, width)

    def run(self, graph: str, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.inference_mode():
            out = self.graphs[graph](*inputs)
        return out if isinstance(out, tuple) else (out,)

    def upload(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def download(self, handle: torch.Tensor) -> np.ndarray:
        return handle.detach().cpu().numpy()
