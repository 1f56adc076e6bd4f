"""Variance stabilisation for signal-dependent noise: the model was trained on AWGN, a camera's
sensor adds Poisson-Gaussian noise (variance a*x + b at intensity x in [0, 1]).

The generalized Anscombe transform (Murtagh, Starck & Bijaoui 1995) makes that noise nearly
Gaussian with one standard deviation everywhere, so the AWGN model (and adaptation with its own
likelihood) sees the noise it assumes; it is scaled back to [0, 1] so its level falls where the model
was trained (gain 0.02, sigma 5: 21 on the 0..255 scale). A denoiser returns E[u | x], not u(x),
so the plain algebraic inverse is biased; the inverse here is the unbiased one (Makitalo & Foi
2013) by tabulation, for the product's noise model (Gaussian of variance a*x + b: a true Poisson
count differs from it by up to 0.4 grey levels at gain 0.02, more at higher gains) with the
frames' 8-bit clipping folded into the expectation. Noise with a negligible signal-dependent part
is AWGN of its mid-grey level: the transform is the identity and the inverse ``stbn.clipping.declip``.
"""

from __future__ import annotations

import numpy as np

from stbn.clipping import declip

_GRID = 1025  # tabulation of the expectation over x in [0, 1]: a quarter grey level
_HERMITE_NODES = 41
_SIGNAL_DEPENDENT = 0.1  # a*0.5 at most this share of b: one level (estimated AWGN gives a ~ 0.001)
_NEGLIGIBLE_VARIANCE = (0.05 / 255.0) ** 2


def _anscombe(z: np.ndarray, a: float, b: float) -> np.ndarray:
    return (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))


def _to_uint8(levels: np.ndarray) -> np.ndarray:
    return np.clip(np.round(levels * 255.0), 0, 255).astype(np.uint8)


class VarianceStabilizer:
    """Frames with noise variance a*x + b (x in [0, 1]) <-> frames with AWGN of level ``sigma``."""

    def __init__(self, a: float, b: float, *, clipped: bool = True) -> None:
        if not (0.0 <= a < np.inf and 0.0 <= b < np.inf):
            raise ValueError(f"noise variance a*x + b needs finite a, b >= 0, got a={a}, b={b}")
        self.a, self.b, self.clipped = float(a), float(b), clipped
        mid_grey = self.a * 0.5 + self.b
        self.gaussian = self.a * 0.5 <= _SIGNAL_DEPENDENT * self.b or mid_grey <= _NEGLIGIBLE_VARIANCE
        self._xs = np.linspace(0.0, 1.0, _GRID)
        if self.gaussian:  # the inverse is the closed-form clipping correction
            self.sigma = float(np.sqrt(mid_grey))
            self._low, self._scale, self._expected = 0.0, 1.0, self._xs
        else:
            self._low = float(_anscombe(np.float64(0.0), self.a, self.b))
            self._scale = float(_anscombe(np.float64(1.0), self.a, self.b)) - self._low
            self.sigma = 1.0 / self._scale  # the transform has unit noise std before the scaling
            # E[u(clip(x + n))] over x, increasing: what a perfect denoiser returns, inverted by lookup
            nodes, weights = np.polynomial.hermite_e.hermegauss(_HERMITE_NODES)
            noisy = self._xs[:, None] + np.sqrt(self.a * self._xs + self.b)[:, None] * nodes[None]
            if clipped:
                noisy = np.clip(noisy, 0.0, 1.0)
            self._expected = (self._forward(noisy) * weights).sum(axis=1) / weights.sum()
        self._uint8_levels = self._forward(np.arange(256) / 255.0).astype(np.float32)

    @property
    def level255(self) -> float:
        """The stabilised noise level on the 0..255 scale (what the model is given)."""
        return self.sigma * 255.0

    def _forward(self, z: np.ndarray) -> np.ndarray:
        if self.gaussian:
            return z
        return (_anscombe(z, self.a, self.b) - self._low) / self._scale

    def forward(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames (or float in [0, 1]) -> float32 frames with AWGN of level ``sigma``."""
        if frames.dtype == np.uint8:
            return self._uint8_levels[frames]  # exact, and no float64 copy of the clip
        return self._forward(np.asarray(frames, np.float64)).astype(np.float32)

    def inverse(self, denoised: np.ndarray) -> np.ndarray:
        """A denoised float image in the stabilised domain -> the estimate of x in [0, 1] (float32)."""
        if self.gaussian:
            out = declip(denoised, 0.0, self.sigma**2) if self.clipped else denoised
            return np.clip(out, 0.0, 1.0).astype(np.float32)
        # below (above) the expectation of a black (white) pixel: np.interp clamps to the ends
        return np.interp(np.asarray(denoised, np.float64), self._expected, self._xs).astype(np.float32)

    def forward_table(self) -> np.ndarray:
        """(256,) uint8 lookup table of ``forward`` (the streaming loop's input: its graphs take
        8-bit frames, so the stabilised frame is quantised, 1/12 of a level of variance at sigma 21)."""
        return _to_uint8(self._uint8_levels)

    def inverse_table(self) -> np.ndarray:
        """(256,) uint8 lookup table of ``inverse`` (the streaming loop's output). Where the transform
        compresses (bright areas at high gain) one stabilised level spans up to 3 output levels."""
        return _to_uint8(self.inverse(np.arange(256, dtype=np.float64) / 255.0))

    def model_input(self, frames: np.ndarray, streamed: bool) -> np.ndarray:
        """(N, H, W, 3) uint8 -> the float32 frames the model sees: offline the transform itself,
        streamed through ``forward_table`` as the streaming loop does (what adaptation trains on)."""
        if streamed:
            return self.forward_table()[frames].astype(np.float32) / 255.0
        return self.forward(frames)
