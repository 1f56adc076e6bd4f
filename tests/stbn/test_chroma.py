"""stbn.chroma: the chroma of camera-noise frames from a lossy source, filtered at half resolution."""

from __future__ import annotations

import cv2
import numpy as np

from stbn.chroma import finish_chroma, smooth_chroma_420
from stbn.noise_estimation import Compression


def _ycc(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb) * 255.0


def _blotchy(clean: np.ndarray, amplitude: float, seed: int = 0) -> np.ndarray:
    """``clean`` with colour blotches as 4:2:0 leaves them: chroma noise at half resolution, upsampled."""
    h, w = clean.shape[:2]
    rng = np.random.default_rng(seed)
    ycc = _ycc(clean)
    for c in (1, 2):
        ycc[..., c] += cv2.resize(rng.normal(0, amplitude, (h // 2, w // 2)).astype(np.float32), (w, h))
    rgb = cv2.cvtColor(ycc / 255.0, cv2.COLOR_YCrCb2RGB)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def test_colour_blotches_on_a_flat_area_go_and_the_luma_stays() -> None:
    clean = np.full((64, 96, 3), (120, 140, 100), np.uint8)
    noisy = _blotchy(clean, 4.0)
    out = smooth_chroma_420(noisy, level255=8.0)
    chroma_error = lambda x: float(np.abs(_ycc(x)[..., 1:] - _ycc(clean)[..., 1:]).mean())  # noqa: E731
    assert chroma_error(out) < 0.5 * chroma_error(noisy)
    assert np.abs(_ycc(out)[..., 0] - _ycc(noisy)[..., 0]).max() <= 1.5  # luma: rounding only


def test_a_colour_edge_well_above_the_noise_level_is_kept() -> None:
    edge = np.zeros((64, 96, 3), np.uint8)
    edge[:, :48] = (200, 40, 40)
    edge[:, 48:] = (40, 40, 200)
    out = smooth_chroma_420(edge, level255=8.0)
    away = np.r_[0:44, 52:96]  # the half-resolution step blurs the edge's two pixels either side at most
    assert np.abs(out[:, away].astype(int) - edge[:, away]).max() <= 2


def test_only_camera_noise_from_a_lossy_source_is_finished() -> None:
    noisy = _blotchy(np.full((32, 32, 3), 128, np.uint8), 4.0)
    assert not np.array_equal(finish_chroma(noisy, 8.0, True, Compression.LOSSY), noisy)
    for correlated, compression in ((False, Compression.LOSSY), (True, Compression.UNKNOWN), (True, Compression.NONE)):
        assert finish_chroma(noisy, 8.0, correlated, compression) is noisy
