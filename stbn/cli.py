"""The ``stbn`` console script: ``stbn info`` (and the training/evaluation subcommands)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from stbn.config import PRESETS, FlowKind, STBNConfig
from stbn.model import STBN


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _clip_macs(config: STBNConfig, frames: int, size: tuple[int, int]) -> tuple[float, float]:
    model = STBN(config).eval()
    totals = {"denoiser": 0, "flow": 0}
    flow_modules = set(model.flow.modules())

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        kind = "flow" if module in flow_modules else "denoiser"
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            macs = inputs[0].numel() * module.out_channels * k // module.groups
        else:
            macs = output.numel() * (module.in_channels // module.groups) * k
        totals[kind] += macs

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.prior(torch.rand(1, frames, config.in_channels, *size), 0.1)
    for h in handles:
        h.remove()
    return totals["denoiser"], totals["flow"]


def macs_per_pixel(config: STBNConfig, size: tuple[int, int] = (64, 96)) -> tuple[float, float]:
    """Steady-state (denoiser, flow) conv MACs per pixel per frame, counted by hooks.

    The difference between a 6- and a 2-frame clip removes the cheaper first frame of each
    direction (Stage A only). Transposed convs count in_elements x out_ch x k^2 / groups.
    """
    d6, f6 = _clip_macs(config, 6, size)
    d2, f2 = _clip_macs(config, 2, size)
    pixels = 4 * size[0] * size[1]
    return (d6 - d2) / pixels, (f6 - f2) / pixels


def info_table() -> str:
    rows = [
        "| preset | params (no flow) | params (pyramid flow) | params (PWC flow) "
        "| MAC/px offline | MAC/px causal | flow MAC/px offline |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, config in PRESETS.items():
        no_flow = dataclasses.replace(config, flow=FlowKind.ZERO)
        denoiser = count_parameters(STBN(no_flow))
        pyramid = count_parameters(STBN(dataclasses.replace(config, flow=FlowKind.PYRAMID)))
        pwc = count_parameters(STBN(dataclasses.replace(config, flow=FlowKind.PWC)))
        offline, flow = macs_per_pixel(config)
        causal, _ = macs_per_pixel(dataclasses.replace(no_flow, bidirectional=False))
        rows.append(
            f"| {name} | {denoiser:,} | {pyramid:,} | {pwc:,} | {offline / 1e3:,.1f} k | {causal / 1e3:,.1f} k "
            f"| {flow / 1e3:,.1f} k |"
        )
    return "\n".join(rows)


def _info(_: argparse.Namespace) -> int:
    print(info_table())
    print("\nMAC/px: conv multiply-accumulates per pixel per frame in steady state; the causal variant is")
    print("forward-only; flow MACs count both directions' flow calls of the preset's flow network.")
    return 0


def build_parser(extra_commands: Sequence[Callable[[Any], None]] = ()) -> argparse.ArgumentParser:
    """The model's commands, plus ``extra_commands`` (each adds its subparser) from layers above."""
    parser = argparse.ArgumentParser(prog="stbn", description="STBN self-supervised video denoising")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="parameters and MAC per pixel of every preset")
    info.set_defaults(func=_info)
    from stbn.evaluation.cli import add_parser as add_eval
    from stbn.training.cli import add_parser as add_train

    add_train(sub)
    add_eval(sub)
    for add in extra_commands:
        add(sub)
    return parser


def main(argv: list[str] | None = None, extra_commands: Sequence[Callable[[Any], None]] = ()) -> int:
    args = build_parser(extra_commands).parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
