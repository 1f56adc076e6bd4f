"""stbn.finishing: what the camera model leaves, taken out at half resolution."""

from __future__ import annotations

import cv2
import numpy as np

from stbn.finishing import TONE_BIAS_MAX, finish_camera_frame, remove_tone_bias, smooth_chroma_420, smooth_low_band
from stbn.noise_estimation import Compression


def _ycc(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb) * 255.0


def _u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _blotchy(clean: np.ndarray, amplitude: float, planes: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """``clean`` with blotches two pixels wide (noise at half resolution, upsampled) on the YCrCb
    ``planes``: what a small denoiser, or 4:2:0 chroma, leaves."""
    h, w = clean.shape[:2]
    rng = np.random.default_rng(seed)
    ycc = _ycc(clean)
    for c in planes:
        ycc[..., c] += cv2.resize(rng.normal(0, amplitude, (h // 2, w // 2)).astype(np.float32), (w, h))
    return _u8(cv2.cvtColor(ycc / 255.0, cv2.COLOR_YCrCb2RGB))


def _edge() -> np.ndarray:
    edge = np.zeros((64, 96, 3), np.uint8)
    edge[:, :48] = (200, 40, 40)
    edge[:, 48:] = (40, 40, 200)
    return edge


AWAY = np.r_[0:42, 54:96]  # the half-resolution step touches a few pixels either side of the edge at most


def test_mottling_on_a_flat_area_goes() -> None:
    clean = np.full((64, 96, 3), (120, 140, 100), np.uint8)
    noisy = _blotchy(clean, 2.0, (0, 1, 2))
    out = finish_camera_frame(noisy, 8.0, Compression.UNKNOWN)
    error = lambda x: float(np.abs(x.astype(np.float64) - clean).mean())  # noqa: E731
    assert error(out) < 0.8 * error(noisy)


def test_colour_blotches_from_a_lossy_source_go_and_the_luma_stays() -> None:
    clean = np.full((64, 96, 3), (120, 140, 100), np.uint8)
    noisy = _blotchy(clean, 4.0, (1, 2))
    out = _u8(smooth_chroma_420(noisy.astype(np.float32) / 255.0, 8.0))
    chroma_error = lambda x: float(np.abs(_ycc(x)[..., 1:] - _ycc(clean)[..., 1:]).mean())  # noqa: E731
    assert chroma_error(out) < 0.5 * chroma_error(noisy)
    assert np.abs(_ycc(out)[..., 0] - _ycc(noisy)[..., 0]).max() <= 1.5  # luma: rounding only
    # the chroma is only touched where the source says it is lossy
    lossy = finish_camera_frame(noisy, 8.0, Compression.LOSSY)
    raw = finish_camera_frame(noisy, 8.0, Compression.UNKNOWN)
    assert chroma_error(lossy) < chroma_error(raw)


def test_an_edge_well_above_the_noise_level_is_kept() -> None:
    edge = _edge()
    low_band = _u8(smooth_low_band(edge.astype(np.float32) / 255.0, 8.0))
    for out in (finish_camera_frame(edge, 8.0, Compression.LOSSY), low_band):
        assert np.abs(out[:, AWAY].astype(int) - edge[:, AWAY]).max() <= 2
    # texture in the finest band is not the low band's
    rng = np.random.default_rng(1)
    texture = np.clip(128 + rng.normal(0, 30, (64, 96, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    kept = _u8(smooth_low_band(texture.astype(np.float32) / 255.0, 4.0))
    assert np.abs(kept.astype(int) - texture).mean() < 3.0


def test_the_tone_curves_darkening_of_noise_is_put_back_and_the_blacks_left_alone() -> None:
    # noise added before a 2.2 gamma curve: the picture's mean comes out darker than the clean one's
    rng = np.random.default_rng(3)
    linear = np.full((64, 96, 3), 0.2, np.float32)
    noisy = np.clip(linear + rng.normal(0, 0.06, linear.shape), 0, 1) ** (1 / 2.2)
    clean = float(0.2 ** (1 / 2.2))
    level255 = float(noisy.std() * 255)
    mean = np.full_like(linear, noisy.mean())  # what a denoiser that keeps the local mean gives
    assert clean - float(noisy.mean()) > 1.0 / 255  # the bias is there
    fixed = remove_tone_bias(mean, level255, Compression.UNKNOWN)
    assert abs(float(fixed.mean()) - clean) < 0.15 * abs(float(mean.mean()) - clean)
    black = np.full((8, 8, 3), 0.05, np.float32)
    assert np.array_equal(remove_tone_bias(black, level255, Compression.LOSSY), black)


def test_the_tone_bias_correction_is_bounded_on_a_very_noisy_stream() -> None:
    grey = np.full((8, 8, 3), 0.6, np.float32)
    brightened = remove_tone_bias(grey, 80.0, Compression.LOSSY)  # far beyond the fitted levels
    assert 0.0 < float((brightened - grey).max()) <= TONE_BIAS_MAX + 1e-7
