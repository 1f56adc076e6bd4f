"""Parameter counts, shapes, odd sizes, modes, presets and config validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stbn
from stbn.cli import info_table, macs_per_pixel
from stbn.layers import SplitInputConv, patch_shuffle, patch_unshuffle
from stbn.model import cell_flow, from_cells, to_cells


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_base_matches_the_authors_parameter_counts() -> None:
    assert _params(stbn.build_model("base", flow="zero")) == 9_138_112  # bdc_2_unify
    assert _params(stbn.build_model("base", flow="pwc").flow) == 9_374_274  # sniklaus PWC-Net
    assert _params(stbn.build_model("base", flow="zero", noise_map=False)) == 9_137_728  # bdc_flow


def test_base_mac_count_matches_the_reference() -> None:
    offline, _ = macs_per_pixel(stbn.preset_config("base", flow="zero"), size=(32, 48))
    assert offline == pytest.approx(4.22e6, rel=0.01)


def test_real_time_presets_are_much_cheaper() -> None:
    base, _ = macs_per_pixel(stbn.preset_config("base", flow="zero"), size=(32, 32))
    gpu, _ = macs_per_pixel(stbn.preset_config("gpu-rt", flow="zero"), size=(32, 32))
    cpu, _ = macs_per_pixel(stbn.preset_config("cpu-rt", flow="zero"), size=(32, 32))
    assert cpu < gpu / 8 < base / 64


def test_info_table_lists_every_preset() -> None:
    table = info_table()
    for name in stbn.PRESETS:
        assert f"| {name} |" in table
    assert "9,138,112" in table


def test_patch_unshuffle_index_map_and_inverse() -> None:
    ramp = torch.arange(64.0).view(1, 1, 8, 8)
    out = patch_unshuffle(ramp)
    assert out.shape == (1, 4, 4, 4)
    # channel 0 holds (0,0), (0,1), (0,4), (0,5) on its first row, then (1,0) ...
    assert out[0, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert out[0, 0, 1, 0] == 8.0
    assert out[0, 1, 0, 0] == 2.0  # channel 1 starts at (0, 2)
    assert out[0, 2, 0, 0] == 16.0  # channel 2 starts at (2, 0)
    x = torch.rand(2, 3, 12, 16)
    assert torch.equal(patch_shuffle(patch_unshuffle(x)), x)


def test_pixel_cells_round_trip_and_carry_the_flow_in_cells() -> None:
    x = torch.rand(2, 3, 7, 10)
    cells = to_cells(x, 2)
    assert cells.shape == (2, 12, 4, 5)  # the odd row replicated into a whole cell
    assert torch.equal(cells[:, 0::4, :, :], x[:, :, 0:7:2, 0:10:2])  # channel c*4 + 0: the cells' top-left pixels
    assert torch.equal(from_cells(cells, 2, 7, 10), x)
    assert to_cells(x, 1) is x and from_cells(x, 1, 7, 10) is x
    flow = torch.stack([torch.full((7, 10), 3.0), torch.full((7, 10), -2.0)]).unsqueeze(0)
    assert torch.allclose(cell_flow(flow, 2), torch.tensor([1.5, -1.0]).view(1, 2, 1, 1).expand(1, 2, 4, 5))
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 2, 2, 4)
    assert cell_flow(ramp, 2)[0, 0, 0].tolist() == [0.25, 1.25]  # each cell's mean, in cells


def test_the_camera_preset_buys_width_on_cells_at_about_the_same_cost() -> None:
    student, _ = macs_per_pixel(stbn.preset_config("cpu-rt-distilled", flow="zero"), size=(32, 48))
    camera, _ = macs_per_pixel(stbn.preset_config("cpu-rt-camera", flow="zero"), size=(32, 48))
    assert student < camera < 1.2 * student  # its head's residual unit
    assert _params(stbn.build_model("cpu-rt-camera", flow="zero")) > 3.5 * _params(
        stbn.build_model("cpu-rt-distilled", flow="zero")
    )
    model = stbn.build_model("cpu-rt-camera").eval()
    clip = torch.rand(1, 3, 3, 37, 53)
    with torch.no_grad():
        assert model(clip, 0.1).shape == clip.shape
        constant = model.prior(clip, 0.1)
        mapped = model.prior(clip, torch.full((1, 3, 1, 37, 53), 0.1))
    assert torch.allclose(constant, mapped, atol=1e-6)  # a level map is averaged over each cell
    assert model.state_size(37, 53) == (19, 27)
    for change in ({"unshuffle": 2}, {"head_reads_frame": True}):
        with pytest.raises(ValueError, match="non-blind"):
            stbn.build_model("cpu-rt", **change)


@pytest.mark.parametrize("preset", ["cpu-rt-distilled", "cpu-rt-camera"])
def test_a_fresh_non_blind_model_starts_near_its_input(preset: str) -> None:
    # every row of the head's mean (each colour of each pixel of a cell) starts small, so that a
    # fresh student outputs the noisy frame plus a small correction
    model = stbn.build_model(preset, flow="zero")
    rows = model.head.exit.weight.flatten(1).norm(dim=1)
    assert len(rows) == 3 * model.config.unshuffle**2
    assert rows.max() < 0.3  # He's initialisation gives rows of norm about 1, MEAN_INIT_SCALE a tenth of that


@pytest.mark.parametrize("frames", [1, 2, 4])
@pytest.mark.parametrize("train", [True, False])
def test_odd_sizes_short_clips_and_modes(frames: int, train: bool) -> None:
    model = stbn.build_model("cpu-rt").train(train)
    clip = torch.rand(2, frames, 3, 37, 53)
    prior = model.prior(clip, torch.tensor([0.05, 0.2]))
    assert prior.shape == (2, frames, 9, 37, 53)
    out = model(clip, 0.1)
    assert out.shape == clip.shape
    assert torch.isfinite(prior).all() and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_sigma_as_a_map_and_bad_sigma() -> None:
    model = stbn.build_model("cpu-rt", flow="zero").eval()
    clip = torch.rand(1, 2, 3, 16, 20)
    with torch.no_grad():
        constant = model.prior(clip, 0.1)
        mapped = model.prior(clip, torch.full((1, 2, 1, 16, 20), 0.1))
    # A constant level is added after Stage A's entry conv, a map is convolved: same up to rounding.
    assert torch.allclose(constant, mapped, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\] scale"):
        model(clip, 25.0)
    with pytest.raises(ValueError, match="clip"):
        model(torch.rand(2, 3, 16, 20), 0.1)


def test_forward_only_variant_has_no_backward_branch() -> None:
    model = stbn.build_model("cpu-rt", bidirectional=False)
    assert model.backward_rnn is None
    with pytest.raises(ValueError, match="forward-only"):
        model.propagate("backward", torch.rand(1, 3, 8, 8), torch.zeros(1, 1, 1, 1), None, None)
    with pytest.raises(ValueError, match="not a valid Direction"):  # not silently the backward branch
        stbn.build_model("cpu-rt").propagate("sideways", torch.rand(1, 3, 8, 8), None, None, None)


def test_config_rejects_unknown_presets_keys_and_values() -> None:
    with pytest.raises(ValueError, match="unknown STBN preset"):
        stbn.build_model("huge")
    with pytest.raises(ValueError, match="unknown STBNConfig keys"):
        stbn.build_model("cpu-rt", chanels=8)
    with pytest.raises(ValueError, match="flow"):
        stbn.build_model("cpu-rt", flow="raft")
    with pytest.raises(ValueError, match="stage_a_tail"):
        stbn.build_model("cpu-rt", stage_a_tail=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_split_input_conv_equals_the_conv_of_the_concatenation(batch: int) -> None:
    torch.manual_seed(0)
    conv = SplitInputConv(3 + 5 + 2, 4)
    frame, hidden = torch.rand(batch, 3, 6, 7), torch.rand(batch, 5, 6, 7)
    level = torch.rand(batch, 2, 1, 1)
    dense = F.conv2d(torch.cat([frame, hidden, level.expand(-1, -1, 6, 7)], 1), conv.weight, conv.bias)
    torch.testing.assert_close(conv([frame, hidden], level), dense)
    # An int part stands for that many zero channels.
    zeros = torch.cat([frame, torch.zeros_like(hidden), level.expand(-1, -1, 6, 7)], 1)
    zeros = F.conv2d(zeros, conv.weight, conv.bias)
    torch.testing.assert_close(conv([frame, 5], level), zeros)
    with pytest.raises(ValueError, match="expects 10 input channels, got 8"):
        conv([frame, hidden])
