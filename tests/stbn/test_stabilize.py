"""Variance stabilisation of Poisson-Gaussian noise: one noise level after the transform, an
unbiased inverse (8-bit clipping included), the AWGN case reducing to the clipping correction, the
blind (a, b) estimate, and the shipped AWGN model denoising shot noise better through it."""

from __future__ import annotations

import numpy as np
import pytest

import stbn
from stbn.clipping import declip
from stbn.evaluation.metrics import psnr
from stbn.noise_estimation import estimate_clip_noise
from stbn.offline import denoise_frames
from stbn.stabilize import VarianceStabilizer
from stbn.training.motion import synthetic_clip
from stbn.training.photos import HELDOUT_PHOTOS, load_photos
from stbn.weights import shipped_checkpoint

SHIPPED = shipped_checkpoint()
A, B = 0.02, (5 / 255) ** 2


def _shot_noise(x: np.ndarray, rng: np.random.Generator, a: float = A, b: float = B) -> np.ndarray:
    """8-bit frames of x (float in [0, 1]) with noise variance a*x + b, clipped as a camera stores them."""
    z = x + np.sqrt(a * x + b) * rng.standard_normal(x.shape)
    return np.clip(np.round(z * 255.0), 0, 255).astype(np.uint8)


def test_the_transform_gives_one_noise_level_and_its_inverse_is_unbiased() -> None:
    stabilizer = VarianceStabilizer(A, B)
    assert 15.0 < stabilizer.level255 < 30.0  # where the model was trained (sigma 5..55)
    rng = np.random.default_rng(0)
    for x in (0.0, 0.01, 0.05, 0.2, 0.5, 0.8, 1.0):
        u = stabilizer.forward(_shot_noise(np.full(200_000, x), rng))
        if 0.1 <= x <= 0.8:  # away from the clipped ends the noise std is the stabilised one
            assert u.std() == pytest.approx(stabilizer.sigma, rel=0.05)
        # a perfect denoiser returns E[u | x]; the inverse must send it back to x
        assert stabilizer.inverse(np.array([u.mean()]))[0] == pytest.approx(x, abs=2e-3)
    raw_stds = [np.std(_shot_noise(np.full(50_000, x), rng) / 255.0) for x in (0.2, 0.8)]
    assert raw_stds[1] > 1.8 * raw_stds[0]  # the noise the transform flattens


def test_without_gain_the_transform_is_the_identity_and_the_inverse_the_clipping_correction() -> None:
    b = (30 / 255) ** 2
    stabilizer = VarianceStabilizer(0.0, b)
    frames = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_allclose(stabilizer.forward(frames), frames / 255.0, atol=1e-7)
    assert stabilizer.level255 == pytest.approx(30.0)
    z = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    np.testing.assert_allclose(stabilizer.inverse(z), declip(z, 0.0, b), atol=1e-6)
    np.testing.assert_allclose(VarianceStabilizer(0.0, b, clipped=False).inverse(z), z)
    with pytest.raises(ValueError, match="a, b >= 0"):
        VarianceStabilizer(-0.01, b)


@pytest.fixture(scope="module")
def shot_noise_clip() -> tuple[np.ndarray, np.ndarray]:
    clean = synthetic_clip(load_photos(HELDOUT_PHOTOS[:1]), 6, (144, 192), np.random.default_rng(5)).frames
    clean = np.clip(clean, 0.0, 1.0)
    return (clean * 255 + 0.5).astype(np.uint8), _shot_noise(clean, np.random.default_rng(6), a=0.03)


def test_the_blind_estimate_finds_the_gain(shot_noise_clip) -> None:
    # 7 % of this photo is near white: with its clipped blocks left in, the estimate was 0.015
    a, b = estimate_clip_noise(shot_noise_clip[1], every=1)
    assert a == pytest.approx(0.03, rel=0.25) and b < 0.03 * 0.25  # mostly shot noise, as made




def test_shot_noise_is_denoised_better_through_the_transform(shot_noise_clip) -> None:
    clean, noisy = shot_noise_clip
    model = stbn.load_checkpoint(SHIPPED).model
    a, b = 0.03, (5 / 255) ** 2
    mid_grey = float(np.sqrt(a * 0.5 + b) * 255.0)  # one AWGN level, as the blind AWGN path gives
    as_gaussian = np.stack(list(denoise_frames(model, noisy, mid_grey)))
    stabilised = np.stack(list(denoise_frames(model, noisy, np.sqrt(b) * 255.0, gain=a)))
    assert psnr(stabilised, clean, 255.0) > psnr(as_gaussian, clean, 255.0) + 0.2
    assert psnr(stabilised, clean, 255.0) > psnr(noisy, clean, 255.0) + 5.0


def test_adaptation_keeps_the_awgn_likelihood_only_where_it_fits(shot_noise_clip) -> None:
    from stbn.adapt import Objective, choose_objective

    clean, shot = shot_noise_clip
    awgn = np.clip(np.round(clean + 25.0 * np.random.default_rng(7).standard_normal(clean.shape)), 0, 255)
    assert choose_objective(awgn.astype(np.uint8), stabilised=False) is Objective.TRAINED
    assert choose_objective(shot, stabilised=False) is Objective.MEAN  # AWGN's likelihood would be wrong here
    assert choose_objective(shot, stabilised=True) is Objective.TRAINED  # but not after the transform


def test_the_streaming_loop_stabilises_shot_noise_too(shot_noise_clip) -> None:
    from stbn.noise_estimation import NoiseConfig, NoiseMode
    from stbn.step import EagerRunner
    from stbn.streaming import StreamingDenoiser

    clean, noisy = shot_noise_clip
    model = stbn.load_checkpoint(SHIPPED).model

    def stream(noise: NoiseConfig) -> np.ndarray:
        denoiser = StreamingDenoiser(EagerRunner(model), lookahead=1, noise=noise)
        return np.stack([f.image for f in denoiser.stream(noisy)])

    mid_grey = float(np.sqrt(0.03 * 0.5 + (5 / 255) ** 2) * 255.0)
    as_gaussian = stream(NoiseConfig(mode=NoiseMode.FIXED, sigma=mid_grey))
    stabilised = stream(NoiseConfig(mode=NoiseMode.FIXED, sigma=5.0, gain=0.03))
    assert psnr(stabilised, clean, 255.0) > psnr(as_gaussian, clean, 255.0) + 0.2


def test_black_frames_and_bad_noise_models_give_answers_or_clear_errors() -> None:
    from stbn.adapt import Objective, choose_objective
    from stbn.noise_estimation import estimate_poisson_gaussian

    black = np.zeros((4, 64, 96, 3), np.uint8)  # a fade-in: no intensity spread to fit a line to
    assert estimate_poisson_gaussian(black[0]) == (0.0, 0.0)
    assert choose_objective(black, stabilised=False) is Objective.TRAINED
    for a, b in [(float("nan"), B), (A, float("inf")), (-0.01, B)]:
        with pytest.raises(ValueError, match="finite a, b >= 0"):
            VarianceStabilizer(a, b)
    with pytest.raises(ValueError, match="at least one frame"):
        estimate_clip_noise(black[:0])


def test_what_the_streaming_loop_feeds_its_graphs_is_what_adaptation_trains_on() -> None:
    stabilizer = VarianceStabilizer(A, B)
    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    streamed = stabilizer.model_input(frames, streamed=True)
    np.testing.assert_array_equal(streamed * 255.0, stabilizer.forward_table()[frames].astype(np.float32))
    assert np.abs(streamed - stabilizer.forward(frames)).max() <= 0.5 / 255 + 1e-6  # the tables' rounding
    assert VarianceStabilizer(0.001, (25 / 255) ** 2).gaussian  # an estimate's stray gain on AWGN: one level
