"""Blind-spot conformance: output (t, p) never depends on the current frame at p or at any
same-frame offset whose coordinates are both even."""

from __future__ import annotations

import pytest
import torch

import stbn


def _input_gradient(model: stbn.STBN, clip: torch.Tensor, t: int, y: int, x: int) -> torch.Tensor:
    clip = clip.clone().requires_grad_(True)
    prior = model.prior(clip, 0.1)
    prior[0, t, :, y, x].sum().backward()
    return clip.grad[0]  # (T, C, H, W)


CASES = [
    # (preset, overrides, T, H, W)
    ("cpu-rt", {}, 3, 17, 23),
    ("cpu-rt", {"bidirectional": False}, 3, 20, 24),
    ("gpu-rt", {}, 3, 13, 31),
    ("gpu-rt", {"bidirectional": False}, 2, 21, 19),
    ("base", {}, 3, 19, 22),
]


@pytest.mark.parametrize(("preset", "overrides", "frames", "height", "width"), CASES)
def test_prior_is_blind_to_the_centre_and_even_offsets(preset, overrides, frames, height, width) -> None:
    torch.manual_seed(0)
    model = stbn.build_model(preset, flow="zero", **overrides)
    generator = torch.Generator().manual_seed(height * width)
    clip = torch.rand(1, frames, 3, height, width, generator=generator)
    for _ in range(3):
        t = int(torch.randint(frames, (1,), generator=generator))
        y = int(torch.randint(height, (1,), generator=generator))
        x = int(torch.randint(width, (1,), generator=generator))
        grad = _input_gradient(model, clip, t, y, x)
        same_frame = grad[t].abs().sum(0)  # (H, W)
        assert same_frame[y, x] == 0.0
        even = same_frame[y % 2 :: 2, x % 2 :: 2]  # every offset (2i, 2j) from (y, x)
        assert torch.count_nonzero(even) == 0, f"leak at even offsets for {(t, y, x)}"
        # The receptive field is not empty: the network does see odd offsets of the frame ...
        assert same_frame.sum() > 0
        # ... and, with zero flow, the neighbouring frames at the same pixel.
        other = t + 1 if t + 1 < frames else t - 1
        if overrides.get("bidirectional", True) or other < t:
            assert grad[other, :, y, x].abs().sum() > 0


def test_blind_spot_holds_with_the_learned_flow() -> None:
    torch.manual_seed(1)
    model = stbn.build_model("cpu-rt", flow="pyramid")
    clip = torch.rand(1, 3, 3, 24, 28)
    grad = _input_gradient(model, clip, 1, 11, 13)[1].abs().sum(0)
    assert torch.count_nonzero(grad[11 % 2 :: 2, 13 % 2 :: 2]) == 0
    assert grad.sum() > 0
