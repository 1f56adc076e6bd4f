"""Frozen model configuration and named presets."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from stbn.yamlconfig import enum_member


class FlowKind(str, enum.Enum):
    """The alignment flow network (``STBNConfig.flow``)."""

    PYRAMID = "pyramid"  # the project's small coarse-to-fine estimator (trained by distillation)
    PWC = "pwc"  # PWC-Net, as the authors' checkpoints carry it
    ZERO = "zero"  # no motion: frames aligned as they are


@dataclass(frozen=True)
class STBNConfig:
    """Every number that shapes an STBN model.

    The recurrent part runs with ``channels`` features at full resolution, or on the frame's
    ``unshuffle`` x ``unshuffle`` pixel cells; SRFE runs after the parity-preserving 4x4
    patch-unshuffle at ``srfe_channels``.
    """

    in_channels: int = 3  # sRGB
    channels: int = 64  # hidden state width (h_f, h_b)
    stage_a_units: int = 5  # dilation-2 residual units in the blind-spot block (Stage A)
    stage_a_mix: int = 2  # 1x1 layers after the masked conv in Stage A
    stage_a_tail: int = 3  # 1x1 layers of the Stage A tail (>= 1)
    stage_b_mid: int = 128  # width inside the shared BSA fusion block (Stage B)
    stage_b_units: int = 5
    srfe_channels: int = 256
    srfe_groups: int = 2  # residual groups in the SRFE body
    srfe_units: int = 8  # units per group
    srfe_conv_groups: int = 2  # groups of the 3x3 conv inside each unit
    srfe_reduce: int = 0  # > 0: 1x1 to this many channels before the unshuffle (cheaper SRFE)
    head_units: int = 2
    # True: the head also reads the hidden states directly (a skip around SRFE, as drawn in the
    # paper's figure; the authors' code has none), so full-resolution detail need not pass SRFE.
    srfe_skip: bool = False
    # True: the prior mean is a residual over the mean of the 8 ring neighbours of the current
    # frame (blind-spot safe), so it is a denoised image from the first step and the Gaussian NLL
    # cannot park a wrong colour under a large covariance (see docs/training.md).
    ring_mean: bool = False
    # False: a non-blind student (a distilled STBN): Stage A's 3x3 conv sees the centre pixel and
    # the head outputs the clean frame as a residual over the noisy one (no covariance, no
    # posterior). Trained on a blind-spot teacher's posterior means (stbn.training, `teacher:`).
    blind_spot: bool = True
    # > 1 (a non-blind model only): the network runs on the frame's s x s pixel phases stacked as
    # channels (FFDNet's reversible down-sampling), hidden states at 1/s of the frame's height and
    # width. At s = 2 the same MACs per frame pixel buy twice the channels (four times the
    # parameters) and twice the receptive field; a demosaic's correlated noise falls inside a cell.
    unshuffle: int = 1
    # True (a non-blind model only): the output head also reads the frame (its cells) directly, a
    # linear path from every pixel of a cell to the cell's outputs. Without it, a cell's 12 values
    # reach the head only through the narrow ReLU stages, which leave pixel-level noise behind.
    head_reads_frame: bool = False
    noise_map: bool = True  # feed sigma maps to Stage A (the authors' bdc_2_unify)
    bidirectional: bool = True  # False: forward-only (causal) variant, SRFE takes h_f alone
    flow: FlowKind = FlowKind.PYRAMID
    flow_channels: int = 32  # width of the pyramid flow network
    flow_levels: int = 4

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", int) and (not isinstance(value, int) or value < 0):
                raise ValueError(f"STBNConfig.{field.name} must be a non-negative int, got {value!r}")
        object.__setattr__(self, "flow", enum_member(FlowKind, self.flow, "STBNConfig.flow"))
        if self.srfe_channels % self.srfe_conv_groups:
            raise ValueError("srfe_channels must be divisible by srfe_conv_groups")
        if self.ring_mean and not self.blind_spot:
            raise ValueError("ring_mean is the blind-spot prior's base; a non-blind model is a residual over its input")
        if self.unshuffle < 1:
            raise ValueError("unshuffle must be at least 1")
        if self.unshuffle > 1 and self.blind_spot:
            raise ValueError("unshuffle > 1 mixes a pixel with its neighbours: only for a non-blind model")
        if self.head_reads_frame and self.blind_spot:
            raise ValueError("head_reads_frame shows the head the pixel it predicts: only for a non-blind model")
        if min(self.channels, self.srfe_channels, self.stage_b_mid, self.in_channels, self.stage_a_tail) < 1:
            raise ValueError("channel counts and stage_a_tail must be positive")

    @property
    def out_channels(self) -> int:
        """Prior mean (C) plus the C*(C+1)/2 entries of the covariance factor: 9 for sRGB; a
        non-blind model outputs the image alone (C)."""
        if not self.blind_spot:
            return self.in_channels
        return self.in_channels + self.in_channels * (self.in_channels + 1) // 2

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a checkpoint stores no enum of this module)."""
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> STBNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown STBNConfig keys: {unknown}")
        return cls(**data)


PRESETS: dict[str, STBNConfig] = {
    # The paper's configuration (authors' bdc_2_unify: 9,138,112 parameters without flow).
    "base": STBNConfig(),
    # GPU real time at 1280x720, 30 frames/s with look-ahead 2: ~0.45 MMAC/pixel per frame at L=2,
    # about 10x below `base`, keeping the paper's topology (BSA Stage B, SRFE groups).
    "gpu-rt": STBNConfig(
        channels=32,
        stage_a_units=2,
        stage_b_mid=64,
        stage_b_units=2,
        srfe_channels=128,
        srfe_groups=2,
        srfe_units=3,
        head_units=2,
        ring_mean=True,
        flow_channels=24,
    ),
    # Two CPU cores at 640x360, >= 10 frames/s causal (L=0) through ONNX Runtime. At 16 channels
    # every full-resolution layer costs ~2-3 ms there whatever its width, so this preset cuts
    # layers, not channels (16 is one AVX-512 block): one Stage A mix layer, a one-layer Stage A
    # tail, a linear Stage B (no residual unit), the two streams reduced to 8 channels before the
    # SRFE unshuffle, a linear output head; the nonlinear depth left is Stage A and the SRFE.
    "cpu-rt": STBNConfig(
        channels=16,
        stage_a_units=1,
        stage_a_mix=1,
        stage_a_tail=1,
        stage_b_mid=16,
        stage_b_units=0,
        srfe_channels=32,
        srfe_groups=1,
        srfe_units=2,
        srfe_reduce=8,
        head_units=0,
        srfe_skip=True,
        ring_mean=True,
        flow_channels=16,
        flow_levels=3,
    ),
}
# The distilled student of the CPU preset: the same layers and cost, no blind spot.
PRESETS["cpu-rt-distilled"] = dataclasses.replace(PRESETS["cpu-rt"], ring_mean=False, blind_spot=False)
# The CPU camera model: the student's layers on the frame's 2x2 cells at twice the widths (the same
# MACs per pixel, four times the parameters, twice the receptive field), its head reading the frame
# and with one residual unit (+12 % MACs offline, +18 % causal).
PRESETS["cpu-rt-camera"] = dataclasses.replace(
    PRESETS["cpu-rt-distilled"],
    unshuffle=2,
    channels=32,
    stage_b_mid=32,
    srfe_channels=64,
    srfe_reduce=16,
    head_units=1,
    head_reads_frame=True,
)


def preset_config(name: str, **overrides: Any) -> STBNConfig:
    """The named preset with ``overrides`` applied (unknown names are errors)."""
    if name not in PRESETS:
        raise ValueError(f"unknown STBN preset {name!r}; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(STBNConfig)})
    if unknown:
        raise ValueError(f"unknown STBNConfig keys: {unknown}")
    return dataclasses.replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
