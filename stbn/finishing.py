"""The last touch on a frame the camera model denoised: what it leaves, taken out at half resolution,
and the tone curve's bias.

The camera model (a small network) leaves low-amplitude, low-frequency mottling on flat areas, a
fraction of the noise level and a few pixels wide. Two filters at half resolution take it out, at
about 5 ms per 640x360 frame on one core (9 with the chroma):

- **the low band** of every camera-noise frame: the frame's 2x2-averaged view is filtered with an
  edge-preserving (bilateral) filter, its range half the measured noise level, and the change is
  brought back up; edges and texture, far above that range or in the frame's finest band, stay.
- **the chroma** of frames from a source that says it is lossy: H.264, HEVC and JPEG store the
  chroma at half resolution (4:2:0), so the colour noise that is left after them is blotches two or
  more pixels wide; the two YCrCb chroma planes are filtered the same way at half resolution and
  replace the full-resolution ones. Without a codec it is not used: there chroma detail finer than
  the noise survives, and this filter cost 0.4-1.1 dB at low ISO.
- **the tone-curve bias**: a camera adds its noise before the tone curve, and a concave curve turns
  zero-mean noise into a darker mean (Jensen: E[f(x + n)] < f(x)), by about half the curve's
  curvature times the noise variance. The camera model learned what a second capture shows on
  average, so its output carries that bias (dev clips, high ISO: -2 to -3 of 255 above a pixel value
  of 0.3, tapering to none in the blacks, where clipping pushes the other way). It is put back as
  ``gain x level^2`` (bounded) times a ramp over the pixel's value; the gain is larger where the
  source is lossy, since the codec lowers the level the live path measures but not the bias made
  before it.

Measured on dev clips (the evaluation content groups' tuning clips, never scored) and on the whole
evaluation: docs/camera.md, "What the live path does with it", items 5 and 6.
"""

from __future__ import annotations

import cv2
import numpy as np

from stbn.noise_estimation import Compression

# bilateral range = FINISH_RANGE x the measured level; spatial radius in half-resolution pixels.
# Dev clips, six camera settings: 0.35-0.5 x the level and radius 2-3 within 0.05 dB of each other.
FINISH_RANGE = 0.5
LOW_BAND_RADIUS = 3
CHROMA_RADIUS = 3
# the bias removed: TONE_BIAS_GAIN x (level / 255)^2, ramping in over pixel values TONE_BIAS_RAMP.
# Fitted on the dev clips (least squares, smooth/static/fast/dark content; 1.09 and 2.95).
TONE_BIAS_GAIN = {Compression.LOSSY: 3.0}
TONE_BIAS_GAIN_DEFAULT = 1.1
TONE_BIAS_RAMP = (0.1, 0.4)
# at most this much (of 1): the largest bias the dev clips showed (3 of 255) with a margin, so that
# the fit is not extrapolated to levels far beyond the evaluation's (a very noisy H.264 stream)
TONE_BIAS_MAX = 4.0 / 255.0


def _half(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape[:2]
    return cv2.resize(plane, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def _full(plane: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return cv2.resize(plane, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def smooth_low_band(image: np.ndarray, level255: float) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] -> the same with its half-resolution view bilateral-filtered
    (range ``FINISH_RANGE * level255``) and the change brought back to full resolution."""
    half = _half(image)
    smoothed = cv2.bilateralFilter(half, 2 * LOW_BAND_RADIUS + 1, FINISH_RANGE * level255 / 255.0, LOW_BAND_RADIUS)
    return image + _full(smoothed - half, image.shape)


def smooth_chroma_420(image: np.ndarray, level255: float) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> the same with its YCrCb chroma planes filtered at half
    resolution (bilateral, range ``FINISH_RANGE * level255``) and brought back up; luma as it was."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    sigma_range = FINISH_RANGE * level255 / 255.0
    for c in (1, 2):
        half = cv2.bilateralFilter(_half(np.ascontiguousarray(ycc[..., c])), 2 * CHROMA_RADIUS + 1, sigma_range,
                                   CHROMA_RADIUS)  # fmt: skip
        ycc[..., c] = _full(half, image.shape)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def remove_tone_bias(image: np.ndarray, level255: float, compression: Compression) -> np.ndarray:
    """(H, W, C) float32 in [0, 1] -> the same brightened by the tone-curve bias the camera's noise
    made at ``level255`` (this module's docstring)."""
    gain = TONE_BIAS_GAIN.get(compression, TONE_BIAS_GAIN_DEFAULT)
    low, high = TONE_BIAS_RAMP
    ramp = np.clip((image - low) / (high - low), 0.0, 1.0)
    return image + min(gain * (level255 / 255.0) ** 2, TONE_BIAS_MAX) * ramp


def finish_camera_frame(frame: np.ndarray, level255: float, compression: Compression) -> np.ndarray:
    """A (H, W, 3) uint8 RGB frame the camera model denoised at ``level255``, finished as this
    module's docstring says (the chroma where the source says it is lossy)."""
    h, w = frame.shape[:2]
    if level255 <= 0 or h < 4 or w < 4:
        return frame
    image = smooth_low_band(frame.astype(np.float32) / 255.0, level255)
    if compression is Compression.LOSSY:
        image = smooth_chroma_420(image, level255)
    image = remove_tone_bias(image, level255, compression)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
