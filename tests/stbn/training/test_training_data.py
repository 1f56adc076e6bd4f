"""Data readers, the synthetic-motion generator, crops, noise and the training config."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from stbn.io import read_clip
from stbn.training.motion import random_clip_crop, synthetic_clip
from stbn.training.noise import add_gaussian, add_poisson_gaussian, sample_sigmas
from stbn.training.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, load_photos
from stbn.warp import warp_bilinear
from tests.conftest import write_lossless_video

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return load_photos(TRAIN_PHOTOS[:4])


def test_training_generator_is_deterministic_under_a_seed(photos: list[np.ndarray]) -> None:
    a = synthetic_clip(photos, 5, (48, 64), np.random.default_rng(7))
    b = synthetic_clip(photos, 5, (48, 64), np.random.default_rng(7))
    c = synthetic_clip(photos, 5, (48, 64), np.random.default_rng(8))
    assert a.frames.shape == (5, 48, 64, 3) and a.flow_next.shape == (4, 2, 48, 64)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.flow_next, b.flow_next)
    assert np.array_equal(a.flow_prev, b.flow_prev)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.dtype == np.float32 and a.frames.min() >= 0.0 and a.frames.max() <= 1.0


def test_training_generator_flow_is_ground_truth(photos: list[np.ndarray]) -> None:
    """Backward-warping frame t+1 with flow(t -> t+1) rebuilds frame t far better than no warp."""
    for seed in range(3):
        clip = synthetic_clip(photos, 4, (96, 96), np.random.default_rng(seed))
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)
        for t in range(3):
            nxt = torch.from_numpy(clip.flow_next[t : t + 1])
            prv = torch.from_numpy(clip.flow_prev[t : t + 1])
            fwd_err = (warp_bilinear(frames[t + 1 : t + 2], nxt, "border") - frames[t : t + 1]).abs().median()
            bwd_err = (warp_bilinear(frames[t : t + 1], prv, "border") - frames[t + 1 : t + 2]).abs().median()
            still = (frames[t + 1] - frames[t]).abs().median()
            assert float(np.abs(clip.flow_next[t]).max()) > 0.5  # there is motion
            assert fwd_err < 0.35 * still and bwd_err < 0.35 * still


def test_training_heldout_photos_are_not_training_photos() -> None:
    assert not set(HELDOUT_PHOTOS) & set(TRAIN_PHOTOS)


def test_training_random_crop_is_the_same_for_every_frame() -> None:
    n, h, w = 10, 40, 50
    ys, xs = np.mgrid[0:h, 0:w]
    frames = np.stack([np.stack([ys, xs, np.full_like(ys, t)], -1) for t in range(n)]).astype(np.float32)
    crop = random_clip_crop(frames, 4, (16, 24), np.random.default_rng(3))
    assert crop.shape == (4, 16, 24, 3)
    assert all(np.array_equal(crop[0, ..., :2], crop[k, ..., :2]) for k in range(4))  # same window
    assert list(crop[:, 0, 0, 2]) == list(range(int(crop[0, 0, 0, 2]), int(crop[0, 0, 0, 2]) + 4))  # consecutive


def test_training_readers_folder_and_video(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (6, 32, 48, 3), dtype=np.uint8)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_clip(folder), frames)
    assert np.array_equal(read_clip(folder, 2, 3), frames[2:5])
    video = write_lossless_video(tmp_path / "clip.mkv", frames)
    decoded = read_clip(video)
    assert decoded.shape == frames.shape and np.array_equal(decoded, frames)  # ffv1/bgr0 is lossless
    assert np.array_equal(read_clip(video, 1, 2), frames[1:3])


def test_training_noise_is_per_sample_float_and_unclipped() -> None:
    gen = torch.Generator().manual_seed(0)
    clean = torch.full((3, 4, 3, 32, 32), 0.02)
    sigma = torch.tensor([5.0, 25.0, 50.0]) / 255
    noisy = add_gaussian(clean, sigma, gen)
    std = (noisy - clean).flatten(1).std(dim=1)
    assert torch.allclose(std, sigma, rtol=0.06)
    assert noisy.min() < 0  # not clipped
    sig = sample_sigmas(1000, (5.0, 55.0), torch.Generator().manual_seed(1)) * 255
    assert float(sig.min()) >= 5.0 and float(sig.max()) <= 55.0 and float(sig.std()) > 10
    gain = torch.tensor([0.01, 0.01, 0.01])
    pg = add_poisson_gaussian(torch.full((3, 2, 3, 64, 64), 0.8), gain, torch.zeros(3), gen)
    assert abs(float((pg - 0.8).std()) - (0.01 * 0.8) ** 0.5) < 0.005
