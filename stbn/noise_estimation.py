"""Blind noise-level estimation for live video (a camera never says its noise level).

Gaussian: Immerkaer's fast noise variance estimator (Immerkaer 1996, "Fast Noise Variance
Estimation"), restricted to non-edge pixels as in Tai & Yang 2008 ("A fast method for image
noise estimation using Laplacian operator and adaptive edge detection"): the 3x3 Laplacian
difference mask cancels smooth structure, Sobel edges (the strongest 10%) are left out, and
sigma = sqrt(pi/2) * mean|I * M| / 6.

Poisson-Gaussian (variance = a * x + b): the same estimator on small flat blocks gives (mean,
variance) pairs; a least-squares line through the lower-median variance per intensity bin
gives (a, b), as in Foi et al. 2008's block-wise approach, simplified.

Estimates are smoothed over time with an exponential moving average on (a, b).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from stbn.yamlconfig import enum_member


class NoiseFamily(str, Enum):
    """What kind of noise: one vocabulary for the checkpoint's noise model, training's ``noise.kind``
    and ``stbn denoise --noise``."""

    GAUSSIAN = "gaussian"  # one level everywhere (AWGN)
    POISSON_GAUSSIAN = "poisson-gaussian"  # variance gain * x + (sigma / 255)^2: a sensor's shot noise


class NoiseMode(str, Enum):
    """How the live path obtains each frame's noise model (``noise.mode``)."""

    FIXED = "fixed"  # the configured sigma (and gain)
    ESTIMATE = "estimate"  # one level, measured blind per stream
    ESTIMATE_POISSON_GAUSSIAN = "estimate-poisson-gaussian"  # variance a*x + b, measured blind

    @classmethod
    def estimating(cls, family: NoiseFamily) -> NoiseMode:
        """The blind mode for a noise family."""
        return cls.ESTIMATE if family is NoiseFamily.GAUSSIAN else cls.ESTIMATE_POISSON_GAUSSIAN


class Correlation(Enum):
    """Whether the noise is white or spatially correlated (a camera's: demosaiced, encoded)."""

    AUTO = "auto"  # measured per stream from the frames (ScaleLevels.correlation); "fixed" mode: white
    WHITE = "white"
    CORRELATED = "correlated"  # the model denoises the four 2x2 phases (stbn.phases)


class Compression(Enum):
    """What the frames' source says of its encoding: an encoder removes part of the noise (and
    smears the rest), so a raw camera's frames need another level than an H.264 stream's."""

    UNKNOWN = "unknown"  # frames handed over as arrays, a camera whose format is not reported
    NONE = "none"  # uncompressed (a raw/YUYV camera, a lossless file)
    LOSSY = "lossy"  # H.264/HEVC/MJPEG/JPEG


# ScaleLevels.correlation, per frame: 1.00-1.20 for AWGN at sigma >= 10 over the evaluation's
# content (1.62 on its most textured clip at sigma 10, 1.87 at sigma 5), 2.0-3.5 for camera noise
# demosaiced bilinearly or edge-aware, 1.6-1.9 after VNG (scripts/fit_camera_level.py, docs). A
# stream turns correlated above the upper threshold and white again below the lower (hysteresis:
# a switch restarts the stream's propagation).
CORRELATED_ABOVE, WHITE_BELOW = 1.7, 1.4
# The level the checkpoint does best with on correlated noise (phases tiled, streaming L=2), as
# exp(c0 + c1 log full + c2 log area2) of ScaleLevels: fitted by scripts/fit_camera_level.py for
# weights/stbn-cpu-rt.pt to the PSNR lost against each clip's best level, on simulated cameras over
# the training photos.
CAMERA_LEVEL = (0.59, 0.08, 0.85)
# The same, fitted on the uncompressed clips alone: for sources that say so (Compression.NONE);
# held out, 0.70 dB below each clip's best level against 1.13 with CAMERA_LEVEL.
CAMERA_LEVEL_RAW = (-0.39, 0.30, 0.97)

_LAPLACIAN_DIFF = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_EDGE_FRACTION = 0.10


@dataclass(frozen=True)
class NoiseConfig:
    """How the per-frame noise model is obtained. Levels are on the 0..255 scale."""

    mode: NoiseMode = NoiseMode.ESTIMATE
    sigma: float = 25.0  # "fixed": Gaussian level
    gain: float = 0.0  # "fixed": Poisson gain a (variance a*x + (sigma/255)^2, x in [0, 1])
    smoothing: float = 0.9  # EMA weight of the past per frame, 0 = no smoothing
    interval: int = 4  # estimate on every n-th frame (tens of ms per 640x360 frame on a CPU core), hold between
    # The frames' noise was clipped to 0..255, as every 8-bit camera and file does: remove the bias
    # that leaves in dark and bright areas of the output (stbn.clipping). Off only for frames whose
    # noise was added after clipping.
    clipped: bool = True
    correlation: Correlation = Correlation.AUTO
    # what the source says of its encoding (the pipeline sets lossy for RTSP and video files, stbn
    # denoise from the file's codec); picks the camera level's fit
    compression: Compression = Compression.UNKNOWN

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", enum_member(NoiseMode, self.mode, "noise.mode"))
        object.__setattr__(self, "correlation", enum_member(Correlation, self.correlation, "noise.correlation"))
        object.__setattr__(self, "compression", enum_member(Compression, self.compression, "noise.compression"))
        if not 0.0 <= self.sigma <= 255.0:
            raise ValueError(f"noise.sigma must be in 0..255, got {self.sigma}")
        if self.gain < 0:
            raise ValueError("noise.gain must be >= 0")
        if not 0.0 <= self.smoothing < 1.0:
            raise ValueError("noise.smoothing must be in [0, 1)")
        if not isinstance(self.interval, int) or self.interval < 1:
            raise ValueError(f"noise.interval must be an int >= 1, got {self.interval!r}")
        if not isinstance(self.clipped, bool):
            raise ValueError(f"noise.clipped must be true or false, got {self.clipped!r}")


@dataclass(frozen=True)
class FrameNoise:
    """The noise model of a frame: variance a*x + b at intensity x in [0, 1]; ``correlated``: the
    model runs on the frame's 2x2 phases and b is the level it needs there (not the noise's own)."""

    a: float
    b: float
    correlated: bool = False

    @property
    def level255(self) -> float:
        """The noise level at mid-grey on the 0..255 scale."""
        return float(np.sqrt(max(self.a * 0.5 + self.b, 0.0)) * 255.0)

    @property
    def sigma255(self) -> float:
        """The constant part's level on the 0..255 scale: sqrt(b) (what ``--sigma`` gives)."""
        return float(np.sqrt(self.b) * 255.0)

    @classmethod
    def gaussian(cls, level255: float, correlated: bool = False) -> FrameNoise:
        return cls(0.0, (level255 / 255.0) ** 2, correlated)


def _laplacian_residual(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """|I * M| and a mask of non-edge pixels (both (H-2, W-2))."""
    residual = np.abs(cv2.filter2D(channel, cv2.CV_32F, _LAPLACIAN_DIFF, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
    gx = cv2.Sobel(channel, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(channel, cv2.CV_32F, 0, 1, ksize=3)
    grad = (np.abs(gx) + np.abs(gy))[1:-1, 1:-1]
    flat = grad <= np.quantile(grad, 1.0 - _EDGE_FRACTION)
    return residual, flat


def estimate_sigma(frame: np.ndarray) -> float:
    """AWGN level of an (H, W, 3) or (H, W) image, on the image's own scale (uint8 -> 0..255).

    For uint8 frames a second pass leaves out pixels whose neighbourhood lies within 1.5 sigma
    of 0 or 255, where clipping has shrunk the noise.
    """
    image = np.asarray(frame, np.float32)
    channels = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    sigmas = []
    for channel in channels:
        channel = np.ascontiguousarray(channel)
        residual, flat = _laplacian_residual(channel)
        sigma = np.sqrt(np.pi / 2.0) * float(residual[flat].mean()) / 6.0
        if frame.dtype == np.uint8:
            local = cv2.blur(channel, (5, 5))[1:-1, 1:-1]
            unclipped = flat & (local > 1.5 * sigma) & (local < 255.0 - 1.5 * sigma)
            if unclipped.mean() > 0.05:
                sigma = np.sqrt(np.pi / 2.0) * float(residual[unclipped].mean()) / 6.0
        sigmas.append(sigma)
    return float(np.mean(sigmas))


@dataclass(frozen=True)
class ScaleLevels:
    """Immerkaer noise levels (0..255) of one frame in three views, the signature of correlated noise.

    White noise reads the same in every view. A camera's does not: demosaicing and the encoder
    correlate neighbours, so the full-resolution Laplacian sees a third to a fifth of it, one 2x2
    phase (every second row and column) about twice as much, and the 2x2-averaged frame (times 2,
    what white noise of the full-resolution level would read there) about its whole standard
    deviation. (Levels of the flattest blocks and of 4x4 views, tried as further predictors of the
    level the model needs, did no better on clips left out of the fit: scripts/fit_camera_level.py.)
    """

    full: float
    phase: float
    area2: float

    @property
    def correlation(self) -> float:
        """phase / full: ~1 for white noise (1.0-1.2 measured at sigma >= 10), 2-3.5 for camera noise."""
        return self.phase / max(self.full, 1e-3)

    def as_array(self) -> np.ndarray:
        return np.array([self.full, self.phase, self.area2])


def scale_levels(frame: np.ndarray) -> ScaleLevels:
    """:class:`ScaleLevels` of an (H, W, 3) uint8 frame."""
    h, w = frame.shape[:2]
    half = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return ScaleLevels(
        estimate_sigma(frame), estimate_sigma(np.ascontiguousarray(frame[::2, ::2])), 2.0 * estimate_sigma(half)
    )


def camera_level(levels: ScaleLevels, compression: Compression = Compression.UNKNOWN) -> float:
    """The level (0..255) to give the model on correlated noise (:data:`CAMERA_LEVEL`, or
    :data:`CAMERA_LEVEL_RAW` for a source that says its frames are uncompressed)."""
    c0, c_full, c_area2 = CAMERA_LEVEL_RAW if compression is Compression.NONE else CAMERA_LEVEL
    log_level = c0 + c_full * np.log(max(levels.full, 0.05)) + c_area2 * np.log(max(levels.area2, 0.05))
    return float(np.clip(np.exp(log_level), 0.0, 255.0))


def measured_camera_level(levels: ScaleLevels) -> float:
    """The level a camera model trained with ``noise.camera_level: measured`` is given: the
    2x2-averaged view's (about the noise's standard deviation before an encoder, less after one),
    floored at 0.5 (a clean frame)."""
    return max(float(levels.area2), 0.5)


def estimate_poisson_gaussian(frame: np.ndarray, block: int = 16, bins: int = 8) -> tuple[float, float]:
    """(a, b) with variance(x) = a*x + b, x on [0, 1], from an (H, W, 3) uint8 frame."""
    image = np.asarray(frame, np.float32) / 255.0
    means, variances = [], []
    for c in range(image.shape[2]):
        channel = np.ascontiguousarray(image[..., c])
        residual, flat = _laplacian_residual(channel)
        h, w = (residual.shape[0] // block) * block, (residual.shape[1] // block) * block
        res = residual[:h, :w].reshape(h // block, block, w // block, block)
        ok = flat[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3)) > 0.95
        level = np.sqrt(np.pi / 2.0) * res.mean(axis=(1, 3)) / 6.0
        mean = channel[1 : 1 + h, 1 : 1 + w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
        means.append(mean[ok])
        variances.append(level[ok] ** 2)
    m, v = np.concatenate(means), np.concatenate(variances)
    # blocks within two noise deviations of black or white have clipped, shrunken noise: they bend
    # the line (halved a on a photo with 7 % near white, a made up at AWGN sigma 70). Where too few
    # others remain, no signal dependence is measurable: one level, the fit's at mid-grey.
    unclipped = (m > 2.0 * np.sqrt(v)) & (m < 1.0 - 2.0 * np.sqrt(v))
    if unclipped.sum() < 3 * bins:
        a, b = _line(m, v, bins)
        return 0.0, max(a * 0.5 + b, 0.0)
    return _line(m[unclipped], v[unclipped], bins)


def _line(m: np.ndarray, v: np.ndarray, bins: int) -> tuple[float, float]:
    """(a, b) of variance v = a * m + b through per-bin medians of block (mean, variance) pairs."""
    if m.size < bins:
        return 0.0, float(np.median(v)) if v.size else 0.0
    edges = np.quantile(m, np.linspace(0, 1, bins + 1))
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (m >= lo) & (m <= hi)
        if sel.sum() >= 3:
            xs.append(float(np.median(m[sel])))
            ys.append(float(np.quantile(v[sel], 0.5)))
    if len(set(xs)) < 2:  # one intensity (a black or flat frame): no line to fit
        return 0.0, float(np.median(v))
    a, b = np.polyfit(np.array(xs), np.array(ys), 1)
    if a < 0:  # no signal dependence measurable: plain Gaussian
        return 0.0, float(np.mean(ys))
    return float(a), float(max(b, 0.0))


def _sampled(frames: np.ndarray, samples: int) -> np.ndarray:
    return frames[np.linspace(0, len(frames) - 1, min(samples, len(frames))).round().astype(int)]


def estimate_video_sigma(frames: np.ndarray, samples: int = 8) -> float:
    """Median Immerkaer estimate (0..255) over up to ``samples`` frames of a uint8 clip."""
    return float(np.median([estimate_sigma(frame) for frame in _sampled(frames, samples)]))


def clip_scale_levels(frames: np.ndarray, samples: int = 8) -> ScaleLevels:
    """Median :class:`ScaleLevels` over up to ``samples`` frames of a uint8 clip."""
    if len(frames) == 0:
        raise ValueError("clip_scale_levels needs at least one frame")
    return ScaleLevels(*np.median([scale_levels(f).as_array() for f in _sampled(frames, samples)], axis=0))


def estimate_clip_noise(frames: np.ndarray, every: int = 4) -> tuple[float, float]:
    """(a, b) of a clip's Poisson-Gaussian noise from every ``every``-th (H, W, 3) uint8 frame
    (medians of the per-frame estimates: one frame's flat blocks are few)."""
    if len(frames) == 0:
        raise ValueError("estimate_clip_noise needs at least one frame")
    estimates = np.array([estimate_poisson_gaussian(frame) for frame in frames[::every]])
    return float(np.median(estimates[:, 0])), float(np.median(estimates[:, 1]))


def clip_noise(frames: np.ndarray, config: NoiseConfig, camera_model: bool = False) -> FrameNoise:
    """The noise model of a whole uint8 clip (or a history of frames) as ``config`` asks: its fixed
    model, or estimated once over the frames (the clip counterpart of :class:`NoiseTracker`);
    ``camera_model``: correlated noise goes to a camera model (its level: measured_camera_level)."""
    if config.mode is NoiseMode.FIXED:
        return FrameNoise(config.gain, (config.sigma / 255.0) ** 2, config.correlation is Correlation.CORRELATED)
    if config.correlation is Correlation.WHITE:  # nothing to measure but the white level
        if config.mode is NoiseMode.ESTIMATE:
            return FrameNoise.gaussian(estimate_video_sigma(frames))
        return FrameNoise(*estimate_clip_noise(frames))
    levels = clip_scale_levels(frames)
    if _is_correlated(config.correlation, levels.correlation > CORRELATED_ABOVE):
        return FrameNoise.gaussian(_correlated_level(levels, config, camera_model), correlated=True)
    if config.mode is NoiseMode.ESTIMATE:
        return FrameNoise.gaussian(levels.full)  # = estimate_video_sigma(frames): the same frames
    return FrameNoise(*estimate_clip_noise(frames))


def _is_correlated(setting: Correlation, measured: bool) -> bool:
    return measured if setting is Correlation.AUTO else setting is Correlation.CORRELATED


def _correlated_level(levels: ScaleLevels, config: NoiseConfig, camera_model: bool) -> float:
    """The level correlated noise is denoised at: what a camera model was trained to be given, or
    the level the main model needs on the 2x2 phases."""
    return measured_camera_level(levels) if camera_model else camera_level(levels, config.compression)


class NoiseTracker:
    """Per-frame :class:`FrameNoise` for the streaming denoiser: fixed, or estimated and smoothed.

    Estimated: the frame's :class:`ScaleLevels` every ``interval`` frames; their correlation,
    smoothed, decides white or correlated (with hysteresis); white noise gets the Immerkaer level
    (or the Poisson-Gaussian fit), correlated noise :func:`measured_camera_level` where a camera
    model denoises it (``camera_model``), else :func:`camera_level`, both smoothed.
    """

    def __init__(self, config: NoiseConfig, camera_model: bool = False) -> None:
        self.config = config
        self.camera_model = camera_model
        self._state: FrameNoise | None = None
        self._correlation = 1.0  # smoothed ScaleLevels.correlation
        self._frames = 0

    def reset(self) -> None:
        self._state = None
        self._frames = 0

    def update(self, frame: np.ndarray) -> FrameNoise:
        cfg = self.config
        if cfg.mode is NoiseMode.FIXED:
            return FrameNoise(cfg.gain, (cfg.sigma / 255.0) ** 2, cfg.correlation is Correlation.CORRELATED)
        due = self._frames % cfg.interval == 0
        self._frames += 1
        if not due and self._state is not None:
            return self._state
        w = cfg.smoothing**cfg.interval if self._state is not None else 0.0  # the same time constant in frames
        # forced white: the other views are not needed (the white level is the full view's)
        levels = None if cfg.correlation is Correlation.WHITE else scale_levels(frame)
        correlated = False
        if levels is not None:
            self._correlation = w * self._correlation + (1 - w) * levels.correlation
            threshold = WHITE_BELOW if self._state is not None and self._state.correlated else CORRELATED_ABOVE
            correlated = _is_correlated(cfg.correlation, self._correlation > threshold)
        if levels is not None and correlated:
            current = FrameNoise.gaussian(_correlated_level(levels, cfg, self.camera_model), correlated=True)
        elif cfg.mode is NoiseMode.ESTIMATE:
            current = FrameNoise.gaussian(levels.full if levels is not None else estimate_sigma(frame))
        else:
            current = FrameNoise(*estimate_poisson_gaussian(frame))
        if self._state is None or self._state.correlated != correlated:
            self._state = current  # a new family of noise: its own level from the start
        else:
            self._state = FrameNoise(w * self._state.a + (1 - w) * current.a,
                                     w * self._state.b + (1 - w) * current.b, correlated)  # fmt: skip
        return self._state
