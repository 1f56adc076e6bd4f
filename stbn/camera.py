"""Camera-noise simulator: what a sensor, its ISP and an encoder do to a clean sRGB clip.

The steps follow "unprocessing" (Brooks et al., CVPR 2019): sRGB -> inverse tone curve -> inverse
gamma -> inverse colour correction -> inverse white-balance and brightness gains -> Bayer mosaic
(one of the four patterns) -> shot and read noise (variance shot * x + read, x the linear raw
signal; read tied to shot along the log-log line of real sensors) -> saturation at the ADC ->
demosaic (OpenCV: bilinear, edge-aware or VNG) -> gains -> colour correction -> gamma -> tone curve
-> 8 bit -> optionally an encoder (H.264 / HEVC through PyAV at a CRF, or JPEG as from an MJPEG
webcam). The noise a user's footage has is what comes out: spatially correlated (demosaicing),
cross-channel (colour correction), different per channel (white balance), signal-dependent in a
gamma-curved way, quantised and partly removed or smeared by the codec.

``CameraModel.sample(rng)`` draws random parameters for training; ``camera_grid`` gives the fixed
ISO-like levels of the evaluation. Frames are (N, H, W, 3) float32 in [0, 1] in, uint8 out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

# XYZ -> camera matrices of four real cameras (DNG ColorMatrix2 values, as listed by Brooks et al.);
# a random convex mix of them is a plausible sensor.
_XYZ_TO_CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ]
)
_RGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
# Real sensors' read noise rises with their shot noise (both grow with the analogue gain): Brooks et
# al.'s fit, log(read variance) = 2.18 log(shot) + 1.20 (+ N(0, 0.26) across cameras).
_READ_SLOPE, _READ_OFFSET, _READ_SPREAD = 2.18, 1.20, 0.26
SHOT_RANGE = (1e-4, 1.2e-2)  # the shot-noise gain range of the training draws (Brooks et al.'s)


class BayerPattern(Enum):
    """The colour of the top-left 2x2 block of the sensor, row by row."""

    RGGB = "rggb"
    GRBG = "grbg"
    GBRG = "gbrg"
    BGGR = "bggr"

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        """(row, col) inside the 2x2 block of R and B (G fills the other two)."""
        name = self.name
        where = {name[i]: (i // 2, i % 2) for i in range(4) if name[i] in "RB"}
        return where

    @property
    def opencv_code(self) -> int:
        # OpenCV names a pattern by the second row's 2nd and 3rd pixels: RGGB is "BayerBG".
        return {"rggb": cv2.COLOR_BayerBG2RGB, "grbg": cv2.COLOR_BayerGB2RGB,
                "gbrg": cv2.COLOR_BayerGR2RGB, "bggr": cv2.COLOR_BayerRG2RGB}[self.value]  # fmt: skip


class Demosaic(Enum):
    BILINEAR = "bilinear"
    EDGE_AWARE = "edge-aware"
    VNG = "vng"  # variable number of gradients (OpenCV: 8-bit input only)

    def variant(self, code: int) -> int:
        if self is Demosaic.EDGE_AWARE:
            return code + (cv2.COLOR_BayerBG2RGB_EA - cv2.COLOR_BayerBG2RGB)
        if self is Demosaic.VNG:
            return code + (cv2.COLOR_BayerBG2RGB_VNG - cv2.COLOR_BayerBG2RGB)
        return code


class Codec(Enum):
    NONE = "none"
    H264 = "h264"
    HEVC = "hevc"
    JPEG = "jpeg"  # MJPEG webcams: each frame a JPEG


@dataclass(frozen=True)
class CameraModel:
    """One camera: its colour pipeline, its noise at one gain, its encoder."""

    shot: float = 2e-3  # shot-noise gain: variance shot * x on the linear raw signal x in [0, 1]
    read: float = 2e-5  # read-noise variance on the raw scale
    red_gain: float = 2.1  # white-balance gains (green 1)
    blue_gain: float = 1.7
    brightness: float = 1.0  # the ISP's overall digital gain (Brooks' rgb_gain)
    rgb_to_cam: tuple[tuple[float, ...], ...] = tuple(map(tuple, np.eye(3)))  # rows sum to 1
    pattern: BayerPattern = BayerPattern.RGGB
    demosaic: Demosaic = Demosaic.BILINEAR
    codec: Codec = Codec.NONE
    quality: int = 23  # H.264/HEVC: CRF (lower = better); JPEG: quality 1..100
    tone_curve: bool = True  # the smoothstep "S" of Brooks et al. on top of the gamma

    def __post_init__(self) -> None:
        if self.shot < 0 or self.read < 0:
            raise ValueError(f"noise variances must be >= 0, got shot={self.shot}, read={self.read}")
        if min(self.red_gain, self.blue_gain, self.brightness) <= 0:
            raise ValueError("gains must be positive")
        if np.asarray(self.rgb_to_cam).shape != (3, 3):
            raise ValueError("rgb_to_cam must be a 3x3 matrix")
        if self.codec in (Codec.H264, Codec.HEVC) and not 0 <= self.quality <= 51:
            raise ValueError(f"a CRF is in 0..51, got {self.quality}")
        if self.codec is Codec.JPEG and not 1 <= self.quality <= 100:
            raise ValueError(f"JPEG quality is in 1..100, got {self.quality}")

    @staticmethod
    def read_for(shot: float, spread: float = 0.0) -> float:
        """Read-noise variance of a typical sensor at this shot-noise gain (``spread``: sd of log)."""
        return float(np.exp(_READ_SLOPE * np.log(shot) + _READ_OFFSET + spread))

    @classmethod
    def sample(cls, rng: np.random.Generator, shot_range: tuple[float, float] = SHOT_RANGE,
               codecs: tuple[Codec, ...] = (Codec.NONE, Codec.H264, Codec.JPEG)) -> CameraModel:  # fmt: skip
        """Random parameters for training (ranges of Brooks et al.; codec quality from common settings)."""
        shot = float(np.exp(rng.uniform(np.log(shot_range[0]), np.log(shot_range[1]))))
        weights = rng.uniform(1e-8, 1.0, len(_XYZ_TO_CAMS))
        xyz_to_cam = np.tensordot(weights / weights.sum(), _XYZ_TO_CAMS, axes=1)
        codec = codecs[int(rng.integers(len(codecs)))]
        quality = int(rng.integers(18, 31)) if codec in (Codec.H264, Codec.HEVC) else int(rng.integers(60, 96))
        return cls(
            shot=shot,
            read=cls.read_for(shot, float(rng.normal(0.0, _READ_SPREAD))),
            red_gain=float(rng.uniform(1.9, 2.4)),
            blue_gain=float(rng.uniform(1.5, 1.9)),
            brightness=float(1.0 / rng.normal(0.8, 0.1)),
            rgb_to_cam=_normalised(xyz_to_cam @ _RGB_TO_XYZ),
            pattern=list(BayerPattern)[int(rng.integers(4))],
            demosaic=list(Demosaic)[int(rng.integers(len(Demosaic)))],
            codec=codec,
            quality=quality,
        )

    def replace(self, **changes: object) -> CameraModel:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # --- the pipeline ------------------------------------------------------------------------------

    def unprocess(self, frames: np.ndarray) -> np.ndarray:
        """sRGB (N, H, W, 3) in [0, 1] -> linear camera RGB (before the mosaic), float64."""
        x = np.clip(np.asarray(frames, np.float64), 0.0, 1.0)
        if self.tone_curve:
            x = 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)
        x = np.maximum(x, 1e-8) ** 2.2
        x = x @ np.asarray(self.rgb_to_cam).T
        return x / self._gains()

    def process(self, raw_rgb: np.ndarray) -> np.ndarray:
        """Linear camera RGB -> sRGB float in [0, 1] (the inverse of ``unprocess``)."""
        x = np.clip(raw_rgb * self._gains(), 0.0, 1.0)
        x = x @ np.linalg.inv(np.asarray(self.rgb_to_cam)).T
        x = np.clip(x, 1e-8, 1.0) ** (1.0 / 2.2)
        if self.tone_curve:
            x = 3.0 * x**2 - 2.0 * x**3
        return np.clip(x, 0.0, 1.0)

    def _gains(self) -> np.ndarray:
        return np.array([self.red_gain, 1.0, self.blue_gain]) * self.brightness

    def mosaic(self, raw_rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) -> (N, H, W) Bayer raw: each pixel keeps the colour its filter passes."""
        h, w = raw_rgb.shape[1:3]
        channel = np.ones((h, w), np.intp)  # green by default
        for colour, (r, c) in self.pattern.offsets.items():
            channel[r::2, c::2] = 0 if colour == "R" else 2
        rows, cols = np.indices((h, w))
        return raw_rgb[:, rows, cols, channel]

    def add_noise(self, bayer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Shot and read noise (Gaussian approximation of Poisson, as Brooks et al.), then saturation."""
        variance = self.shot * np.maximum(bayer, 0.0) + self.read
        return np.clip(bayer + rng.standard_normal(bayer.shape) * np.sqrt(variance), 0.0, 1.0)

    def demosaic_frames(self, bayer: np.ndarray) -> np.ndarray:
        """(N, H, W) raw in [0, 1] -> (N, H, W, 3) linear camera RGB (16-bit, or 8-bit for VNG)."""
        code = self.demosaic.variant(self.pattern.opencv_code)
        scale = 255.0 if self.demosaic is Demosaic.VNG else 65535.0
        dtype = np.uint8 if self.demosaic is Demosaic.VNG else np.uint16
        out = []
        for frame in bayer:
            quantised = np.round(np.clip(frame, 0.0, 1.0) * scale).astype(dtype)
            out.append(cv2.cvtColor(quantised, code).astype(np.float64) / scale)
        return np.stack(out)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) through the codec and back (NONE: unchanged)."""
        if self.codec is Codec.NONE:
            return frames
        if self.codec is Codec.JPEG:
            params = [cv2.IMWRITE_JPEG_QUALITY, self.quality]
            out = []
            for frame in frames:
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
                if not ok:
                    raise RuntimeError("JPEG encoding failed")
                out.append(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
            return np.stack(out)
        return _video_round_trip(frames, "libx264" if self.codec is Codec.H264 else "libx265", self.quality)

    def simulate(self, clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Clean sRGB frames (N, H, W, 3) float in [0, 1] -> the camera's noisy uint8 frames."""
        clean = np.asarray(clean)
        if clean.ndim != 4 or clean.shape[-1] != 3:
            raise ValueError(f"clean frames must be (N, H, W, 3), got {clean.shape}")
        raw = self.add_noise(self.mosaic(self.unprocess(clean)), rng)
        srgb = self.process(self.demosaic_frames(raw))
        return self.encode(np.round(srgb * 255.0).astype(np.uint8))

    def reference(self, clean: np.ndarray) -> np.ndarray:
        """What the camera shows of a noiseless scene, float32 in [0, 1]: the PSNR reference. It
        keeps the demosaic's and the encoder's own loss of detail (no denoiser can undo those; the
        demosaic alone costs 25-27 dB on textured content), so a score measures the noise removed."""
        raw = np.clip(self.mosaic(self.unprocess(clean)), 0.0, 1.0)
        shown = self.encode(np.round(self.process(self.demosaic_frames(raw)) * 255.0).astype(np.uint8))
        return shown.astype(np.float32) / 255.0

    def label(self) -> str:
        codec = "" if self.codec is Codec.NONE else f", {self.codec.value} q{self.quality}"
        return f"shot {self.shot:.2g} read {self.read:.2g}, {self.pattern.value}, {self.demosaic.value}{codec}"


def _normalised(matrix: np.ndarray) -> tuple[tuple[float, ...], ...]:
    """Rows summing to 1, so white stays white before the white balance."""
    m = matrix / matrix.sum(axis=1, keepdims=True)
    return tuple(tuple(float(v) for v in row) for row in m)


def _video_round_trip(frames: np.ndarray, encoder: str, crf: int) -> np.ndarray:
    """Encode uint8 RGB frames with PyAV at a CRF (yuv420p, as cameras stream) and decode them."""
    import io

    import av

    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 video needs even sizes, got {w}x{h}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(encoder, rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        if encoder == "libx265":
            stream.options |= {"x265-params": "log-level=error"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(decoded) != n:
        raise RuntimeError(f"{encoder} round trip returned {len(decoded)} of {n} frames")
    return np.stack(decoded)


# --- evaluation grid ------------------------------------------------------------------------------


class IsoLevel(Enum):
    """ISO-like gain levels of the evaluation (shot-noise gain; read noise from the sensor line)."""

    LOW = 1e-3
    MID = 3e-3
    HIGH = 8e-3


@dataclass(frozen=True)
class CameraCondition:
    """One evaluation condition: an ISO level, with or without H.264."""

    iso: IsoLevel
    codec: Codec = Codec.NONE
    quality: int = 23

    @property
    def name(self) -> str:
        suffix = "" if self.codec is Codec.NONE else f"-{self.codec.value}"
        return f"iso-{self.iso.name.lower()}{suffix}"

    def camera(self, clip_index: int) -> CameraModel:
        """The camera of the ``clip_index``-th clip: fixed colour pipeline, pattern and demosaic
        cycling over the clips so a group covers several of them."""
        return CameraModel(
            shot=self.iso.value,
            read=CameraModel.read_for(self.iso.value),
            rgb_to_cam=_normalised(_XYZ_TO_CAMS.mean(axis=0) @ _RGB_TO_XYZ),
            pattern=list(BayerPattern)[clip_index % 4],
            demosaic=(Demosaic.BILINEAR, Demosaic.EDGE_AWARE, Demosaic.VNG)[clip_index % 3],
            codec=self.codec,
            quality=self.quality,
        )


def camera_grid(codecs: tuple[Codec, ...] = (Codec.NONE, Codec.H264)) -> tuple[CameraCondition, ...]:
    """low/mid/high ISO x each codec (H.264 at CRF 23, libx264's default)."""
    return tuple(CameraCondition(iso, codec) for iso in IsoLevel for codec in codecs)
