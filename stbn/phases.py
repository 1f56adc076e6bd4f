"""The four 2x2 pixel phases of a frame, tiled into one frame of the same size.

A camera's noise is correlated between neighbouring pixels (demosaicing interpolates each colour
from its neighbours, the encoder's 4:2:0 chroma spans 2x2 blocks), which a blind-spot model cannot
tell from the signal: it reads the noise off the neighbours and keeps it. Between pixels two apart
the correlation is much weaker, so, as AP-BSN's pixel-shuffle down-sampling (Lee et al., CVPR 2022),
the model denoises each phase (every second row and column from one of the four offsets) as an
image of its own. Tiling the four phases into one frame of the original size (rows 0, 2, 4, ...
then 1, 3, 5, ...; the same for columns) keeps the shape, the engines and the cost unchanged: the
only place a phase sees another is along the tiles' seams, which go back to the frame's borders.
"""

from __future__ import annotations

import numpy as np


def _order(n: int) -> np.ndarray:
    return np.concatenate([np.arange(0, n, 2), np.arange(1, n, 2)])


class PhaseTiling:
    """``tile(frames)`` and its inverse ``untile`` for frames of one size (H, W) on axes -3, -2."""

    def __init__(self, height: int, width: int) -> None:
        self.shape = (height, width)
        self._rows, self._cols = _order(height), _order(width)
        self._inv_rows, self._inv_cols = np.argsort(self._rows), np.argsort(self._cols)

    def tile(self, frames: np.ndarray) -> np.ndarray:
        """(..., H, W, C) -> the same with the four phases as tiles."""
        return self._permute(frames, inverse=False)

    def untile(self, frames: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`tile`."""
        return self._permute(frames, inverse=True)

    def _permute(self, frames: np.ndarray, inverse: bool) -> np.ndarray:
        if frames.shape[-3:-1] != self.shape:
            raise ValueError(f"phase tiling is for {self.shape[1]}x{self.shape[0]} frames, got {frames.shape}")
        h, w = self.shape
        if h % 2 or w % 2:
            rows, cols = (self._inv_rows, self._inv_cols) if inverse else (self._rows, self._cols)
            return np.ascontiguousarray(frames[..., rows, :, :][..., cols, :])
        # even sizes: one strided copy of whole pixels (a C-byte view), ~10x faster than gathering
        lead = frames.shape[:-3]
        pixels = np.ascontiguousarray(frames).view(np.dtype((np.void, frames.dtype.itemsize * frames.shape[-1])))
        split = pixels.reshape(*lead, 2, h // 2, 2, w // 2) if inverse else pixels.reshape(*lead, h // 2, 2, w // 2, 2)
        n = len(lead)
        swapped = split.transpose(*range(n), n + 1, n, n + 3, n + 2)  # (i, r, j, c) <-> (r, i, c, j)
        return np.ascontiguousarray(swapped).view(frames.dtype).reshape(frames.shape)
