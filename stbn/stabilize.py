"""Variance stabilisation for signal-dependent noise: the model was trained on AWGN, a camera's
sensor adds Poisson-Gaussian noise (variance a*x + b at intensity x in [0, 1]).

The generalized Anscombe transform (Murtagh, Starck & Bijaoui 1995) makes that noise nearly
Gaussian with one standard deviation everywhere, so the AWGN model (and adaptation with its own
likelihood) sees the noise it assumes; it is scaled back to [0, 1] so its level falls where the model
was trained (gain 0.02, sigma 5: 21 on the 0..255 scale). A denoiser returns E[u | x], not u(x),
so the plain algebraic inverse is biased; the inverse here is the exact unbiased one (Makitalo &
Foi 2013) by tabulation, with the frames' 8-bit clipping folded into the expectation: for AWGN
(a = 0) the transform is the identity and the inverse is ``stbn.clipping.declip``.
"""

from __future__ import annotations

import numpy as np

from stbn.clipping import declip

_GRID = 1025  # tabulation of the expectation over x in [0, 1]: a quarter grey level
_HERMITE_NODES = 41
_GAUSSIAN = 1e-9  # a gain below this is AWGN


def _anscombe(z: np.ndarray, a: float, b: float) -> np.ndarray:
    return (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))


class VarianceStabilizer:
    """Frames with noise variance a*x + b (x in [0, 1]) <-> frames with AWGN of level ``sigma``."""

    def __init__(self, a: float, b: float, clipped: bool = True) -> None:
        if a < 0 or b < 0:
            raise ValueError(f"noise variance a*x + b needs a, b >= 0, got a={a}, b={b}")
        self.a, self.b, self.clipped = float(a), float(b), clipped
        self.gaussian = self.a < _GAUSSIAN
        if self.gaussian:
            self.sigma = float(np.sqrt(self.b))
            return
        self._low, high = float(_anscombe(np.float64(0.0), a, b)), float(_anscombe(np.float64(1.0), a, b))
        self._scale = high - self._low
        self.sigma = 1.0 / self._scale  # the transform has unit noise std before the scaling
        nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
        self._xs = np.linspace(0.0, 1.0, _GRID)
        noisy = self._xs[:, None] + np.sqrt(a * self._xs + b)[:, None] * nodes[None]
        if clipped:
            noisy = np.clip(noisy, 0.0, 1.0)
        self._expected = (self._forward(noisy) * weights).sum(axis=1) / weights.sum()  # increasing in x

    @property
    def level255(self) -> float:
        """The stabilised noise level on the 0..255 scale (what the model is given)."""
        return self.sigma * 255.0

    def _forward(self, z: np.ndarray) -> np.ndarray:
        return (_anscombe(z, self.a, self.b) - self._low) / self._scale

    def forward(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (or float in [0, 1]) -> float32 frames with AWGN of level ``sigma``."""
        z = frames / 255.0 if frames.dtype == np.uint8 else np.asarray(frames, np.float64)
        return np.asarray(z if self.gaussian else self._forward(z), np.float32)

    def inverse(self, denoised: np.ndarray) -> np.ndarray:
        """A denoised float image in the stabilised domain -> the estimate of x in [0, 1] (float32)."""
        if self.gaussian:
            out = declip(denoised, 0.0, self.b) if self.clipped else denoised
            return np.clip(out, 0.0, 1.0).astype(np.float32)
        # below (above) the expectation of a black (white) pixel: np.interp clamps to the ends
        return np.interp(np.asarray(denoised, np.float64), self._expected, self._xs).astype(np.float32)


def forward_table(stabilizer: VarianceStabilizer) -> np.ndarray:
    """(256,) uint8 lookup table of ``forward`` for 8-bit frames (the streaming loop's input)."""
    levels = stabilizer.forward(np.arange(256, dtype=np.uint8))
    return np.clip(np.round(levels * 255.0), 0, 255).astype(np.uint8)


def inverse_table(stabilizer: VarianceStabilizer) -> np.ndarray:
    """(256,) uint8 lookup table of ``inverse`` for 8-bit denoised frames (the streaming loop's output)."""
    levels = stabilizer.inverse(np.arange(256, dtype=np.float64) / 255.0)
    return np.clip(np.round(levels * 255.0), 0, 255).astype(np.uint8)


def estimate_clip_noise(frames: np.ndarray, every: int = 4) -> tuple[float, float]:
    """(a, b) of a clip's Poisson-Gaussian noise from every ``every``-th (H, W, 3) uint8 frame
    (medians of the per-frame estimates: one frame's flat blocks are few)."""
    from stbn.noise_estimation import estimate_poisson_gaussian

    estimates = np.array([estimate_poisson_gaussian(frame) for frame in frames[::every]])
    return float(np.median(estimates[:, 0])), float(np.median(estimates[:, 1]))
