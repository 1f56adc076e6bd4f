"""The camera-noise simulator: its colour pipeline inverts, its mosaic patterns are the ones named,
its sensor noise has the variance of its model, what comes out is correlated like a camera's,
and the evaluation's camera settings are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from stbn.camera import BayerPattern, CameraModel, Codec, Demosaic, camera_grid
from stbn.noise_estimation import scale_levels
from stbn.phases import PhaseTiling


def _scene(frames: int = 2, h: int = 48, w: int = 64) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.45 + 0.3 * np.sin(5 * xs + 1), 0.5 + 0.25 * np.cos(4 * ys), 0.35 + 0.3 * xs * ys], -1)
    return np.stack([np.roll(base, t, axis=1) for t in range(frames)]).astype(np.float32)


def test_unprocess_then_process_returns_the_input_within_rounding() -> None:
    rng = np.random.default_rng(0)
    for _ in range(4):
        camera = CameraModel.sample(rng)
        clean = _scene()
        back = camera.process(camera.unprocess(clean))
        assert np.abs(back - clean).max() < 0.5 / 255, camera.label()


@pytest.mark.parametrize("pattern", list(BayerPattern))
@pytest.mark.parametrize("demosaic", list(Demosaic))
def test_each_bayer_pattern_and_demosaic_keeps_the_colours(pattern: BayerPattern, demosaic: Demosaic) -> None:
    colour = np.array([0.7, 0.4, 0.2], np.float32)  # red-orange: a swapped R/B would read blue-ish
    flat = np.broadcast_to(colour, (1, 32, 32, 3)).copy()
    camera = CameraModel(shot=0.0, read=0.0, pattern=pattern, demosaic=demosaic)
    out = camera.simulate(flat, np.random.default_rng(0))[0, 8:-8, 8:-8].reshape(-1, 3).mean(0) / 255.0
    assert np.abs(out - colour).max() < 3 / 255, (pattern, demosaic, out)


def test_sensor_noise_variance_matches_its_model_on_flat_patches() -> None:
    camera = CameraModel(shot=4e-3, read=2e-4)
    rng = np.random.default_rng(1)
    for level in (0.05, 0.2, 0.5):
        flat = np.full((4, 64, 64), level)
        noisy = camera.add_noise(flat, rng)
        expected = camera.shot * level + camera.read
        assert np.var(noisy - flat) == pytest.approx(expected, rel=0.05), level


def test_camera_noise_is_spatially_correlated_and_detected_as_such() -> None:
    clean = np.full((2, 64, 96, 3), 0.45, np.float32)
    camera = CameraModel(shot=6e-3, read=CameraModel.read_for(6e-3))
    noise = camera.simulate(clean, np.random.default_rng(2)).astype(np.float32) / 255.0 - camera.reference(clean)
    green = noise[..., 1]
    neighbours = np.corrcoef(green[:, :, :-1].ravel(), green[:, :, 1:].ravel())[0, 1]
    assert neighbours > 0.3  # demosaicing interpolates each pixel from its neighbours
    # the multi-scale levels tell it from white noise of the same strength
    noisy = camera.simulate(clean, np.random.default_rng(3))[0]
    white = np.clip(clean[0] * 255 + np.random.default_rng(4).normal(0, noise.std() * 255, clean[0].shape), 0, 255)
    assert scale_levels(noisy).correlation > 1.7
    assert scale_levels(white.round().astype(np.uint8)).correlation < 1.4


@pytest.mark.parametrize("codec", [Codec.H264, Codec.JPEG])
def test_codecs_return_every_frame_and_remove_some_noise(codec: Codec) -> None:
    clean = _scene(4)
    raw = CameraModel(shot=5e-3, read=CameraModel.read_for(5e-3))
    encoded = raw.replace(codec=codec, quality=28 if codec is Codec.H264 else 70)
    plain = raw.simulate(clean, np.random.default_rng(5))
    coded = encoded.simulate(clean, np.random.default_rng(5))
    assert coded.shape == plain.shape and coded.dtype == np.uint8
    error = lambda frames, cam: np.std(frames / 255.0 - cam.reference(clean))  # noqa: E731
    assert error(coded, encoded) < error(plain, raw)


def test_evaluation_settings_are_reproducible_and_ordered_by_iso() -> None:
    clean = _scene(2)
    stds = []
    for condition in camera_grid((Codec.NONE,)):
        camera = condition.camera(0)
        a = camera.simulate(clean, np.random.default_rng(7))
        b = camera.simulate(clean, np.random.default_rng(7))
        assert np.array_equal(a, b)
        stds.append(np.std(a / 255.0 - camera.reference(clean)))
    assert stds == sorted(stds)
    with pytest.raises(ValueError, match="CRF"):
        CameraModel(codec=Codec.H264, quality=60)


@pytest.mark.parametrize(("h", "w", "dtype"), [(7, 9, np.uint8), (8, 10, np.uint8), (6, 4, np.float32)])
def test_phase_tiling_inverts_for_any_size(h: int, w: int, dtype: type) -> None:
    frames = (np.random.default_rng(0).random((2, h, w, 3)) * 255).astype(dtype)
    tiling = PhaseTiling(h, w)
    tiled = tiling.tile(frames)
    assert tiled.dtype == frames.dtype and np.array_equal(tiling.untile(tiled), frames)
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    assert np.array_equal(tiled[:, :h2, :w2], frames[:, ::2, ::2])  # phase (0, 0) is the top-left tile
    assert np.array_equal(tiled[:, :h2, w2:], frames[:, ::2, 1::2])
    assert np.array_equal(tiled[:, h2:, w2:], frames[:, 1::2, 1::2])
    with pytest.raises(ValueError, match="phase tiling"):
        tiling.tile(frames[:, :-1])


def test_a_raw_sources_camera_level_has_its_own_fit() -> None:
    from stbn.noise_estimation import Compression, ScaleLevels, camera_level

    levels = ScaleLevels(full=5.0, phase=12.0, area2=20.0)
    assert camera_level(levels, Compression.NONE) < camera_level(levels, Compression.UNKNOWN)
    assert camera_level(levels, Compression.LOSSY) == camera_level(levels, Compression.UNKNOWN)
