"""Files on disk: which files are frames, in which order (training data, ``stbn denoise``), and
where the project's data folders (shipped weights, configs) are."""

from __future__ import annotations

import site
import sys
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (by suffix, any case), sorted by name; [] if it is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def project_data_folders(name: str) -> list[Path]:
    """Where the project's data folder ``name`` ("weights", "configs") can be, in order: the
    checkout (or an editable install), then the copy an installed wheel carries as data files
    (``<prefix>/share/stbn-stream/<name>``, pyproject's ``data-files``; the venv's or the user's)."""
    prefixes = [p for p in (sys.prefix, site.USER_BASE) if p]
    return [Path(__file__).resolve().parents[1] / name] + [Path(p) / "share" / "stbn-stream" / name for p in prefixes]
