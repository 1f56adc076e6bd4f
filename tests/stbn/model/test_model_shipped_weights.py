"""The shipped checkpoints: a blind-spot model's prior mean must itself be a denoised image; a
camera model must denoise camera noise, in the right colours.

A Gaussian NLL can hide a poor prior mean under a large predicted covariance (the posterior then
leans on the noisy pixel and the output stays noisy), so the mean is checked on its own, on a
smooth clip that no training run has seen, and against every permutation of its channels.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import stbn
from stbn.evaluation.metrics import psnr
from stbn.training.motion import MotionConfig, synthetic_clip
from stbn.weights import CAMERA_MODELS, SHIPPED_PRESET, resolve_camera_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parents[3] / "weights"
CAMERA_WEIGHTS = sorted(WEIGHTS_DIR / w.file for w in CAMERA_MODELS.values())
WEIGHTS = sorted(set(WEIGHTS_DIR.glob("stbn-*.pt")) - set(CAMERA_WEIGHTS))
SIGMA = 25.0


def _smooth_photo(seed: int) -> np.ndarray:
    """Low-frequency colour field (bicubic upsampling of a 5x7 random grid): gradients, soft blobs."""
    grid = np.random.default_rng(seed).uniform(0.1, 0.9, (5, 7, 3)).astype(np.float32)
    return np.clip(cv2.resize(grid, (700, 500), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)




@pytest.mark.parametrize("path", WEIGHTS, ids=[p.name for p in WEIGHTS])
def test_prior_mean_of_shipped_weights_denoises_in_the_right_colours(path: Path) -> None:
    loaded = stbn.load_checkpoint(path)
    model = loaded.model.eval()
    photos = [_smooth_photo(seed) for seed in range(3)]
    clip = synthetic_clip(photos, 6, (96, 128), np.random.default_rng(0), MotionConfig(layers=(1, 2)))
    clean = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).unsqueeze(0)
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * SIGMA / 255.0
    with torch.no_grad():
        mean = model.prior(noisy, SIGMA / 255.0)[:, :, :3].clamp(0.0, 1.0)
    noisy_psnr = psnr(noisy.clamp(0.0, 1.0).numpy(), clean.numpy())
    orders = itertools.permutations(range(3))
    by_order = {order: psnr(mean[:, :, list(order)].numpy(), clean.numpy()) for order in orders}
    assert by_order[(0, 1, 2)] >= noisy_psnr + 3.0, (by_order[(0, 1, 2)], noisy_psnr)
    assert max(by_order, key=by_order.__getitem__) == (0, 1, 2), by_order


@pytest.mark.parametrize("path", CAMERA_WEIGHTS, ids=[p.name for p in CAMERA_WEIGHTS])
def test_a_shipped_camera_model_denoises_camera_noise_in_the_right_colours(path: Path) -> None:
    from stbn.camera import CameraModel
    from stbn.noise_estimation import clip_scale_levels, measured_camera_level

    model = stbn.load_checkpoint(path).model.eval()
    photos = [_smooth_photo(seed) for seed in range(3)]
    clip = synthetic_clip(photos, 6, (96, 128), np.random.default_rng(0), MotionConfig(layers=(1, 2)))
    camera = CameraModel(shot=6e-3, read=CameraModel.read_for(6e-3))
    noisy8 = camera.simulate(clip.frames, np.random.default_rng(1))
    reference = torch.from_numpy(camera.reference(clip.frames)).permute(0, 3, 1, 2).unsqueeze(0)
    noisy = torch.from_numpy(noisy8.astype(np.float32) / 255.0).permute(0, 3, 1, 2).unsqueeze(0)
    level = measured_camera_level(clip_scale_levels(noisy8)) / 255.0
    with torch.no_grad():
        out = model(noisy, level)
    noisy_psnr = psnr(noisy.numpy(), reference.numpy())
    by_order = {o: psnr(out[:, :, list(o)].numpy(), reference.numpy()) for o in itertools.permutations(range(3))}
    assert by_order[(0, 1, 2)] >= noisy_psnr + 5.0, (by_order[(0, 1, 2)], noisy_psnr)
    assert max(by_order, key=by_order.__getitem__) == (0, 1, 2), by_order


def test_each_preset_names_its_camera_model_and_none_turns_it_off(tmp_path: Path) -> None:
    for preset, weights in CAMERA_MODELS.items():
        assert resolve_camera_checkpoint("", preset).name == weights.file
        assert resolve_camera_checkpoint("shipped", preset).name == weights.file
        assert stbn.load_checkpoint(resolve_camera_checkpoint("", preset)).preset == weights.preset
    assert SHIPPED_PRESET in CAMERA_MODELS
    assert resolve_camera_checkpoint("none", SHIPPED_PRESET) is None
    assert resolve_camera_checkpoint("", "no-such-preset") is None
    own = tmp_path / "mine.pt"
    assert resolve_camera_checkpoint(str(own), SHIPPED_PRESET) == own
