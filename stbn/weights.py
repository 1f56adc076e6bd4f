"""The shipped weights: which file and model card belong to each preset, and where they are.

A checkout has them in its ``weights/`` folder; an installed wheel carries them as data files
(``<prefix>/share/stbn-stream/weights``, pyproject's ``data-files``); ``$STBN_WEIGHTS`` names
another folder. So ``stbn denoise``, the pipeline and ``build_model(preset, weights="shipped")``
find them from any working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stbn.io import project_data_folders

SHIPPED_PRESET = "cpu-rt"  # the default model everywhere


@dataclass(frozen=True)
class ShippedWeights:
    preset: str
    file: str  # checkpoint file name
    card: str  # its model card


REGISTRY: dict[str, ShippedWeights] = {
    "cpu-rt": ShippedWeights("cpu-rt", "stbn-cpu-rt.pt", "stbn-cpu-rt.md"),
    "gpu-rt": ShippedWeights("gpu-rt", "stbn-gpu-rt.pt", "stbn-gpu-rt.md"),
}


# Each preset's camera model, where it has one: a non-blind network trained on camera noise that the
# live path and `stbn denoise` hand frames with correlated noise (stbn.streaming).
CAMERA_MODELS: dict[str, ShippedWeights] = {
    "cpu-rt": ShippedWeights("cpu-rt-camera", "stbn-cpu-rt-camera.pt", "stbn-cpu-rt-camera.md"),
}
NO_CAMERA_MODEL = "none"  # engine.camera_checkpoint: correlated noise on the main model's 2x2 phases


class WeightsNotFound(FileNotFoundError):
    """No shipped weights for a preset, or none of the places that hold them has the file."""


def weights_folders() -> list[Path]:
    """Where shipped weights are looked for, in order."""
    folders = [Path(os.environ["STBN_WEIGHTS"]).expanduser()] if os.environ.get("STBN_WEIGHTS") else []
    return folders + project_data_folders("weights")


def shipped_file(name: str) -> Path:
    """A file of the shipped weights folder (a checkpoint or a card) by name."""
    for folder in weights_folders():
        if (folder / name).is_file():
            return folder / name
    searched = ", ".join(str(f) for f in weights_folders())
    raise WeightsNotFound(f"shipped weights file {name} not found (looked in {searched}; set STBN_WEIGHTS)")


def shipped_checkpoint(preset: str = SHIPPED_PRESET) -> Path:
    """The shipped checkpoint of ``preset``."""
    if preset not in REGISTRY:
        raise WeightsNotFound(f"no shipped weights for preset {preset!r}; shipped: {sorted(REGISTRY)}")
    return shipped_file(REGISTRY[preset].file)


def resolve_camera_checkpoint(value: str | Path, preset: str | None) -> Path | None:
    """A configured camera model as a path: "" or "shipped" is the camera model shipped for the
    main model's ``preset`` (None where it has none), "none" is None, a path is resolved as
    :func:`resolve_checkpoint` does."""
    text = str(value)
    if text == NO_CAMERA_MODEL:
        return None
    if text in ("", "shipped"):
        shipped = CAMERA_MODELS.get(preset or SHIPPED_PRESET)
        return shipped_file(shipped.file) if shipped is not None else None
    return resolve_checkpoint(text)


def resolve_checkpoint(value: str | Path, preset: str | None = None) -> Path:
    """A configured checkpoint as a path: "" or "shipped" is ``preset``'s shipped checkpoint; a path
    that exists is itself; a relative ``weights/<file>`` that is not here (a config read outside
    the checkout) is that file of the shipped weights; anything else is returned as given, for
    the loader to report as missing."""
    text = str(value)
    if text in ("", "shipped"):
        return shipped_checkpoint(preset or SHIPPED_PRESET)
    path = Path(text).expanduser()
    if path.exists() or path.is_absolute():
        return path
    if path.parts[:1] == ("weights",) and len(path.parts) == 2:
        try:
            return shipped_file(path.name)
        except WeightsNotFound:
            return path
    return path
