"""Synthetic-motion clips with ground-truth flow, and random T-frame crops.

A global pan/zoom/rotation of a photo plus independently moving layers (cut from other photos) that
occlude each other and the background; deterministic under a seed. Frames are float32 (T, H, W, 3)
in [0, 1], flows (T-1, 2, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


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


def random_window(
    shape: tuple[int, ...], length: int, size: int | tuple[int, int], rng: np.random.Generator
) -> tuple[slice, slice, slice]:
    """A random (time, row, column) window of ``length`` frames of ``size`` in an (N, H, W, ...) array:
    the one crop sampler of training, adaptation and its guard."""
    ch, cw = (size, size) if isinstance(size, int) else size
    n, h, w = shape[:3]
    if n < length or h < ch or w < cw:
        raise ValueError(f"cannot take {length} frames of {ch}x{cw} from a clip of {n} frames of {h}x{w}")
    t0 = int(rng.integers(0, n - length + 1))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return slice(t0, t0 + length), slice(y0, y0 + ch), slice(x0, x0 + cw)


def random_clip_crop(
    frames: np.ndarray, length: int, size: int | tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """``length`` consecutive frames of (N, H, W, 3) with one random spatial crop for all of them."""
    return frames[random_window(frames.shape, length, size, rng)]


def centre_crop(frames: np.ndarray, height: int | None, width: int | None) -> np.ndarray:
    """Centre crop of (N, H, W, C) to at most (height, width)."""
    h, w = frames.shape[1:3]
    ch, cw = min(height or h, h), min(width or w, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return frames[:, y0 : y0 + ch, x0 : x0 + cw]
