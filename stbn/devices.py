"""The torch device a name ("auto", "cpu", "cuda", "cuda:N") means here: one rule for engines and training."""

from __future__ import annotations

import torch


class DeviceUnavailable(ValueError):
    """A CUDA device asked for where PyTorch sees none."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is CUDA where PyTorch sees a device, else the CPU; a bare ``cuda`` is this process's
    ``local_rank`` (torchrun gives each process its own GPU)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} asked for, but PyTorch sees no CUDA device")
    return device
