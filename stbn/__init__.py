"""STBN: self-supervised spatiotemporal blind-spot video denoising (Chen et al., AAAI 2025)."""

from __future__ import annotations

from typing import Any

from stbn.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    NoiseModel,
    import_authors_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from stbn.config import PRESETS, STBNConfig, preset_config
from stbn.model import STBN
from stbn.posterior import gaussian_nll, posterior_mean
from stbn.weights import shipped_checkpoint

__all__ = [
    "PRESETS",
    "STBN",
    "CheckpointError",
    "LoadedCheckpoint",
    "NoiseModel",
    "STBNConfig",
    "build_model",
    "gaussian_nll",
    "import_authors_checkpoint",
    "load_checkpoint",
    "posterior_mean",
    "preset_config",
    "save_checkpoint",
]


def build_model(preset: str, flow: str | None = None, weights: str | None = None, **overrides: Any) -> STBN:
    """An STBN model of the named preset: randomly initialised, or with ``weights="shipped"`` the
    preset's shipped weights (stbn.weights; no overrides then). ``flow`` picks the flow network
    ("pyramid", "pwc", "zero"), ``overrides`` replace any other config field."""
    if weights is not None:
        if weights != "shipped":
            raise ValueError(f"weights must be None (random) or 'shipped', not {weights!r} (files: load_checkpoint)")
        if flow is not None or overrides:
            raise ValueError("the shipped weights fix the configuration: no flow or overrides with them")
        return load_checkpoint(shipped_checkpoint(preset), preset=preset).model
    if flow is not None:
        overrides["flow"] = flow
    return STBN(preset_config(preset, **overrides))
