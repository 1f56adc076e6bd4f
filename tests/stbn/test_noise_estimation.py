"""Blind noise-level estimation: within 10% of the true AWGN level on generated clips and on
real footage (bikes.mp4), and a usable Poisson-Gaussian fit."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from engines.base import EngineConfig
from engines.torch_engine import TorchEngine
from stbn.noise_estimation import (
    FrameNoise,
    NoiseConfig,
    NoiseMode,
    NoiseTracker,
    estimate_poisson_gaussian,
    estimate_sigma,
    scale_levels,
)
from stbn.streaming import StreamingDenoiser

SIGMAS = [10, 20, 30, 40, 50]


def _noisy_uint8(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean.astype(np.float32) + rng.normal(0, sigma, clean.shape) + 0.5, 0, 255).astype(np.uint8)


def _generated_clip(frames: int = 4) -> list[np.ndarray]:
    """A real photo panned across frames plus a smooth synthetic gradient scene."""
    photo = skdata.astronaut()
    clip = [photo[40 + 3 * t : 240 + 3 * t, 60 + 5 * t : 380 + 5 * t] for t in range(frames)]
    yy, xx = np.mgrid[0:200, 0:320].astype(np.float32)
    for t in range(frames):
        scene = np.stack([128 + 90 * np.sin((xx + 4 * t) / 19), 128 + 80 * np.cos(yy / 27), 100 + 0.3 * xx], -1)
        clip.append(scene.clip(0, 255).astype(np.uint8))
    return clip


@pytest.mark.parametrize("sigma", SIGMAS)
def test_awgn_level_within_10_percent_on_generated_clips(sigma: int) -> None:
    for i, clean in enumerate(_generated_clip()):
        estimate = estimate_sigma(_noisy_uint8(clean, sigma, seed=i))
        assert abs(estimate - sigma) <= 0.1 * sigma, (i, estimate)


def test_awgn_level_within_10_percent_on_bikes(bikes_frames: list[np.ndarray]) -> None:
    for sigma in SIGMAS:
        estimates = [estimate_sigma(_noisy_uint8(f, sigma, seed=k)) for k, f in enumerate(bikes_frames)]
        assert max(abs(e - sigma) for e in estimates) <= 0.1 * sigma, (sigma, estimates)


def test_poisson_gaussian_fit_recovers_the_level_at_mid_grey(bikes_frames: list[np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    for a, b in [(0.01, (5 / 255) ** 2), (0.004, (10 / 255) ** 2)]:
        x = bikes_frames[0].astype(np.float64) / 255.0
        y = x + np.sqrt(a * x + b) * rng.normal(size=x.shape)
        a_hat, b_hat = estimate_poisson_gaussian(np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8))
        truth = a * 0.5 + b
        assert abs(a_hat * 0.5 + b_hat - truth) <= 0.2 * truth, (a_hat, b_hat)
        assert a_hat > 0.5 * a  # the signal dependence is found


def test_tracker_smooths_over_time_and_fixed_mode_is_exact() -> None:
    clean = _generated_clip(1)[0]
    tracker = NoiseTracker(NoiseConfig(NoiseMode.ESTIMATE, smoothing=0.9, interval=1))
    levels = [tracker.update(_noisy_uint8(clean, s, seed=s)).level255 for s in (20, 40)]
    assert abs(levels[0] - 20) < 2 and 20 < levels[1] < 30  # one frame at 40 moves it only a little
    # Every 4th frame: the frames between hold the level; the 4th moves it as 4 frames would.
    sparse = NoiseTracker(NoiseConfig(NoiseMode.ESTIMATE, smoothing=0.9, interval=4))
    held = [sparse.update(_noisy_uint8(clean, s, seed=s)).level255 for s in (20, 40, 40, 40, 40)]
    assert held[0] == held[1] == held[2] == held[3] and abs(held[0] - 20) < 2
    assert 25 < held[4] < 32  # variance EMA: sqrt(0.9**4 * 20**2 + (1 - 0.9**4) * 40**2) = 28.5
    with pytest.raises(ValueError, match=r"noise\.interval"):
        NoiseConfig(NoiseMode.ESTIMATE, interval=0)
    fixed = NoiseTracker(NoiseConfig(NoiseMode.FIXED, sigma=25.0))
    assert fixed.update(clean) == FrameNoise(0.0, (25 / 255) ** 2, correlated=False)
    with pytest.raises(ValueError, match=r"noise\.mode"):
        NoiseConfig("guess")
    with pytest.raises(ValueError, match=r"0\.\.255"):
        NoiseConfig(NoiseMode.FIXED, sigma=300)


def test_streaming_reports_the_estimated_level(tiny_model) -> None:
    clean = _generated_clip(3)[3:]
    engine = TorchEngine(EngineConfig(backend="torch"), model=tiny_model)
    denoiser = StreamingDenoiser(engine, 0, NoiseConfig(NoiseMode.ESTIMATE))
    out = denoiser.push(_noisy_uint8(clean[0][:64, :96], 30, seed=1), 0)
    assert len(out) == 1 and abs(out[0].sigma - 30) < 4


@pytest.mark.parametrize("sigma", SIGMAS)
def test_white_noise_is_never_taken_for_a_cameras_correlated_noise(sigma: int, bikes_frames) -> None:
    """AWGN keeps the white path (and its exact level) on photos, gradients and real footage."""
    for k, clean in enumerate(_generated_clip() + list(bikes_frames)):
        tracker = NoiseTracker(NoiseConfig(NoiseMode.ESTIMATE, interval=1))
        noisy = _noisy_uint8(clean, sigma, seed=k)
        noise = tracker.update(noisy)
        assert not noise.correlated, (k, scale_levels(noisy))
        assert noise.level255 == pytest.approx(estimate_sigma(noisy), rel=1e-6)
