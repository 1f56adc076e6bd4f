"""Chroma at the resolution a lossy encoder stored it: the colour mottling a camera model leaves on
frames from an H.264/HEVC/JPEG source.

Those encoders keep the chroma at half resolution (4:2:0), so what is left of a camera's colour
noise after them is blotches two or more pixels wide, which the camera model (a small network,
trained on every codec and none) leaves in flat areas. An edge-preserving (bilateral) filter of the
two chroma planes at half resolution, its range a fraction of the frame's measured noise level,
takes them out at a cost of a few milliseconds per 640x360 frame; the luma is untouched, and the
chroma's finest detail is what 4:2:0 had already discarded. On frames whose source is not known to
be lossy it is not used: there chroma detail finer than the noise survives, and the same filter
costs 0.4-0.8 dB at low ISO (docs/camera.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from stbn.noise_estimation import Compression

# bilateral range = CHROMA_RANGE x the measured level; spatial sigma in half-resolution pixels.
# Dev clips (the content groups' tuning clips, never scored), H.264 at low/mid/high ISO: 0.25-1.0 x
# the level gave the same gains within 0.05 dB; radius 3 at half resolution matched radius 6 at full.
CHROMA_RANGE = 0.5
CHROMA_RADIUS = 3


def smooth_chroma_420(frame: np.ndarray, level255: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same frame with its YCrCb chroma planes filtered at half
    resolution (bilateral, range ``CHROMA_RANGE * level255``) and brought back up; luma as it was."""
    h, w = frame.shape[:2]
    if h < 4 or w < 4 or level255 <= 0:
        return frame
    ycc = cv2.cvtColor(frame.astype(np.float32) / 255.0, cv2.COLOR_RGB2YCrCb)
    sigma_range = CHROMA_RANGE * level255 / 255.0
    for c in (1, 2):
        half = cv2.resize(np.ascontiguousarray(ycc[..., c]), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        half = cv2.bilateralFilter(half, 2 * CHROMA_RADIUS + 1, sigma_range, CHROMA_RADIUS)
        ycc[..., c] = cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def finish_chroma(frame: np.ndarray, level255: float, correlated: bool, compression: Compression) -> np.ndarray:
    """A denoised frame's chroma as this module's docstring says: filtered where the noise was a
    camera's (``correlated``) and the source says it is lossy; otherwise the frame as it is."""
    if correlated and compression is Compression.LOSSY:
        return smooth_chroma_420(frame, level255)
    return frame
