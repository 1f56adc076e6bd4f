"""The noise an evaluation adds: AWGN at a level, or a camera (stbn.camera) at an ISO-like gain.

Each setting turns a clean clip into (noisy, reference): AWGN adds seeded Gaussian noise in float,
unclipped, against the clean frames (the reference protocol); a camera returns its 8-bit frames
and what it shows of the noiseless scene (demosaic and encoder included: stbn.camera). ``level``
is what the level-driven methods are given: the true sigma, or the oracle standard deviation of
noisy - reference for a camera (BM3D's "true sigma" there; NL-means' strength is a factor of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stbn.camera import CameraCondition, Codec
from stbn.noise_estimation import Compression


def add_noise(clean: np.ndarray, sigma255: float, seed: int = 0) -> np.ndarray:
    """(N, H, W, 3) clean -> noisy float32, unclipped; the generator is seeded per sequence."""
    gen = torch.Generator().manual_seed(seed)
    seq = torch.from_numpy(np.ascontiguousarray(clean)).permute(0, 3, 1, 2)
    noise = torch.randn(seq.shape, generator=gen, dtype=torch.float32) * (sigma255 / 255.0)
    return (seq + noise).permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True)
class Noisy:
    noisy: np.ndarray  # (N, H, W, 3) float32 (a camera's: its uint8 frames / 255)
    reference: np.ndarray  # (N, H, W, 3) float32 in [0, 1]: what a perfect denoiser returns
    level: float  # 0..255: the true sigma, or the oracle std of noisy - reference


@dataclass(frozen=True)
class Awgn:
    sigma: float

    @property
    def label(self) -> str:
        return f"σ={self.sigma:g}"

    @property
    def camera(self) -> bool:
        return False

    @property
    def source_compression(self) -> Compression:
        """What a source of these frames would say of its encoding: nothing."""
        return Compression.UNKNOWN

    def apply(self, clean: np.ndarray, seed: int, clip_index: int = 0) -> Noisy:
        return Noisy(add_noise(clean, self.sigma, seed), clean, self.sigma)


@dataclass(frozen=True)
class Camera:
    condition: CameraCondition

    @property
    def label(self) -> str:
        return self.condition.name

    @property
    def camera(self) -> bool:
        return True

    @property
    def source_compression(self) -> Compression:
        """What a file or stream of this camera says of its encoding (as the pipeline and
        ``stbn denoise`` read it): lossy where an encoder ran, else nothing."""
        return Compression.UNKNOWN if self.condition.codec is Codec.NONE else Compression.LOSSY

    def apply(self, clean: np.ndarray, seed: int, clip_index: int = 0) -> Noisy:
        camera = self.condition.camera(clip_index)
        noisy = camera.simulate(clean, np.random.default_rng([seed, clip_index])).astype(np.float32) / 255.0
        reference = camera.reference(clean)
        return Noisy(noisy, reference, float(np.std(noisy - reference) * 255.0))


NoiseSetting = Awgn | Camera
