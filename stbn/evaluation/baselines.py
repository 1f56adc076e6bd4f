"""Classical baselines for the evaluation table: per-frame BM3D, OpenCV multi-frame NL-means, ffmpeg hqdn3d,
a Gaussian blur.

All take float noisy frames (N, H, W, 3) (unclipped, [0, 1] scale) and return float frames in [0, 1].
NL-means and hqdn3d work on uint8 (the noisy input is clipped and rounded first); their strengths
are tuned per sigma on a clip that is not scored (``tune_strength``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from stbn.evaluation.metrics import mean, psnr, to_uint8

NLM_FACTORS = (0.3, 0.45, 0.6, 0.75, 0.9, 1.1)  # h = factor * sigma (0..255 scale)
HQDN3D_STRENGTHS = (
    3.0,
    6.0,
    10.0,
    15.0,
    22.0,
    32.0,
    45.0,
    64.0,
    90.0,
)  # luma_spatial; the other three follow ffmpeg's ratios


GAUSSIAN_SIGMAS = (0.35, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)  # blur sigma in pixels


class BaselineUnavailable(RuntimeError):
    """A baseline whose package or program is not installed."""


def bm3d_frames(noisy: np.ndarray, sigma255: float, frames: Sequence[int]) -> dict[int, np.ndarray]:
    """Per-frame BM3D (bm3d.bm3d_rgb, reference implementation) with the true sigma, on ``frames``."""
    try:
        import bm3d
    except ImportError as exc:
        raise BaselineUnavailable("BM3D needs the 'bm3d' package (pip install bm3d)") from exc
    return {
        i: np.clip(bm3d.bm3d_rgb(noisy[i].astype(np.float64), sigma_psd=sigma255 / 255.0), 0.0, 1.0).astype(np.float32)
        for i in frames
    }


def nlm_video(noisy: np.ndarray, h: float, window: int = 5) -> np.ndarray:
    """cv2.fastNlMeansDenoisingColoredMulti with a centred temporal window (shrunk at the ends)."""
    frames = list(to_uint8(noisy))
    n = len(frames)
    out = []
    for i in range(n):
        half = min(window // 2, i, n - 1 - i)
        if half == 0:
            den = cv2.fastNlMeansDenoisingColored(frames[i], None, h, h, 7, 21)
        else:
            den = cv2.fastNlMeansDenoisingColoredMulti(
                frames[i - half : i + half + 1], half, 2 * half + 1, None, h, h, 7, 21
            )
        out.append(den)
    return np.stack(out).astype(np.float32) / 255.0


def gaussian_video(noisy: np.ndarray, blur_sigma: float) -> np.ndarray:
    """Per-frame Gaussian blur (``blur_sigma`` pixels, float, reflect borders), clipped to [0, 1]."""
    out = [cv2.GaussianBlur(f, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT_101) for f in noisy.astype(np.float32)]
    return np.clip(np.stack(out), 0.0, 1.0)


def hqdn3d_video(noisy: np.ndarray, strength: float) -> np.ndarray:
    """ffmpeg's hqdn3d over the whole sequence (rgb24 in and out through yuv444p).

    ``strength`` is luma_spatial; chroma_spatial = 0.75 s, luma_tmp = 1.5 s, chroma_tmp =
    luma_tmp * chroma_spatial / luma_spatial (ffmpeg's own defaults for a single value).
    """
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise BaselineUnavailable("hqdn3d needs the ffmpeg program on PATH")
    n, h, w, _ = noisy.shape
    ls, cs = strength, 0.75 * strength
    lt = 1.5 * strength
    ct = lt * cs / ls
    cmd = [
        exe, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
        "-i", "-", "-vf", f"format=yuv444p,hqdn3d={ls}:{cs}:{lt}:{ct},format=rgb24",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ]  # fmt: skip
    result = subprocess.run(cmd, input=to_uint8(noisy).tobytes(), capture_output=True, check=False)
    if result.returncode != 0:
        raise BaselineUnavailable(f"ffmpeg hqdn3d failed: {result.stderr.decode(errors='replace')[-300:]}")
    out = np.frombuffer(result.stdout, np.uint8)
    if out.size != n * h * w * 3:
        raise BaselineUnavailable(f"ffmpeg returned {out.size} bytes, expected {n * h * w * 3}")
    return out.reshape(n, h, w, 3).astype(np.float32) / 255.0


def tune_strength(
    run: Callable[[np.ndarray, float], np.ndarray],
    candidates: Sequence[float],
    noisy: np.ndarray,
    clean: np.ndarray,
) -> tuple[float, dict[float, float]]:
    """The candidate with the best mean PSNR on a tuning clip (never one that is scored)."""
    scores = {}
    for value in candidates:
        den = run(noisy, value)
        scores[value] = mean([psnr(den[i], clean[i]) for i in range(len(clean))])
    best = max(scores, key=lambda v: scores[v])
    return best, scores
