"""Offline denoising of a whole clip: bidirectional propagation over bounded, overlapping chunks.

Each chunk of ``chunk`` frames is denoised with ``overlap`` extra frames on either side as
context (they are computed and dropped), so memory stays bounded whatever the clip length and
frames next to a chunk border still see both temporal directions.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from stbn.model import STBN, sigma_tensor
from stbn.posterior import posterior_mean


@torch.no_grad()
def denoise_clip(
    model: STBN, frames: np.ndarray, sigma255: float, chunk: int = 16, overlap: int = 4
) -> Iterator[np.ndarray]:
    """(N, H, W, 3) uint8 -> yields N denoised (H, W, 3) uint8 frames in order."""
    if chunk < 1 or overlap < 0:
        raise ValueError(f"chunk must be >= 1 and overlap >= 0, got {chunk}, {overlap}")
    model.eval()
    device = next(model.parameters()).device
    n = len(frames)
    sigma = sigma255 / 255.0
    for start in range(0, n, chunk):
        lo, hi = max(0, start - overlap), min(n, start + chunk + overlap)
        window = torch.from_numpy(np.ascontiguousarray(frames[lo:hi])).to(device)
        x = window.permute(0, 3, 1, 2).unsqueeze(0).float() / 255.0  # (1, T, 3, H, W)
        if model.config.blind_spot:
            out = posterior_mean(model.prior(x, sigma), x, sigma_tensor(sigma, x))
        else:  # a student predicts the clean frame directly
            out = model.prior(x, sigma).clamp(0.0, 1.0)
        keep = out[0, start - lo : start - lo + min(chunk, n - start)]
        images = (keep.permute(0, 2, 3, 1) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        yield from images
