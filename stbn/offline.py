"""Offline denoising of a whole clip: bidirectional propagation over bounded, overlapping chunks.

Each chunk of ``chunk`` frames is denoised with ``overlap`` extra frames on either side as
context (they are computed and dropped), so memory stays bounded whatever the clip length and
frames next to a chunk border still see both temporal directions. The frames are 8-bit, so their
noise was clipped: the output's clipping bias is removed (stbn.clipping) unless ``clipped=False``.
Signal-dependent noise (``gain`` a > 0: variance a*x + (sigma/255)^2) is denoised through a
variance-stabilising transform (stbn.stabilize), the model seeing the AWGN it was trained on.
Spatially correlated noise (``correlated``: a camera's) is denoised on the frames' 2x2 phases
(stbn.phases), ``sigma255`` then being the level the model needs there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from stbn.model import STBN, sigma_tensor
from stbn.phases import PhaseTiling
from stbn.posterior import posterior_mean
from stbn.stabilize import VarianceStabilizer


def denoise_frames(
    model: STBN,
    frames: Iterable[np.ndarray],
    sigma255: float,
    chunk: int = 16,
    overlap: int = 4,
    clipped: bool = True,
    gain: float = 0.0,
    correlated: bool = False,
) -> Iterator[np.ndarray]:
    """Denoise a stream of (H, W, 3) uint8 frames (an (N, H, W, 3) clip, or of unknown length), holding at most
    chunk + 2 x overlap of them; yields the denoised frames in order. The noise variance is
    ``gain`` * x + (``sigma255`` / 255)^2 at intensity x in [0, 1] (AWGN: gain 0)."""
    if chunk < 1 or overlap < 0:
        raise ValueError(f"chunk must be >= 1 and overlap >= 0, got {chunk}, {overlap}")
    noise = VarianceStabilizer(gain, (sigma255 / 255.0) ** 2, clipped=clipped)
    source = iter(frames)
    window: list[np.ndarray] = []  # frames first - len(left context) ...
    left = 0  # how many frames at the start of `window` are context only (already emitted)
    exhausted = False
    while True:
        while not exhausted and len(window) < left + chunk + overlap:
            frame = next(source, None)
            if frame is None:
                exhausted = True
            else:
                window.append(frame)
        if len(window) <= left:
            return
        keep = min(chunk, len(window) - left)
        yield from _denoise_window(model, np.stack(window), noise, left, keep, correlated)
        window = window[left + keep - overlap if overlap else left + keep :]
        left = min(overlap, left + keep)


@torch.no_grad()
def _denoise_window(
    model: STBN, frames: np.ndarray, noise: VarianceStabilizer, start: int, count: int, correlated: bool
) -> list[np.ndarray]:
    model.eval()
    tiling = PhaseTiling(*frames.shape[1:3]) if correlated else None
    if tiling is not None:
        frames = tiling.tile(frames)
    device = next(model.parameters()).device
    sigma = noise.sigma
    x = torch.from_numpy(noise.forward(frames)).to(device).permute(0, 3, 1, 2).unsqueeze(0)
    if model.config.blind_spot:
        out = posterior_mean(model.prior(x, sigma), x, sigma_tensor(sigma, x))
    else:  # a student predicts the clean frame directly
        out = model.prior(x, sigma)
    keep = noise.inverse(out[0, start : start + count].permute(0, 2, 3, 1).cpu().numpy())
    if tiling is not None:
        keep = tiling.untile(keep)
    return list((keep * 255.0 + 0.5).astype(np.uint8))
