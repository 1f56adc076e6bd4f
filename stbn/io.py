"""Files on disk: which files are frames and videos, reading them (training data, evaluation), and
where the project's data folders (shipped weights, configs) are."""

from __future__ import annotations

import site
import sys
from pathlib import Path

import cv2
import numpy as np

from stbn.noise_estimation import Compression

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (by suffix, any case), sorted by name; [] if it is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def project_data_folders(name: str) -> list[Path]:
    """Where the project's data folder ``name`` ("weights", "configs") can be, in order: the
    checkout (or an editable install), then the copy an installed wheel carries as data files
    (``<prefix>/share/stbn-stream/<name>``, pyproject's ``data-files``; the venv's or the user's)."""
    prefixes = [p for p in (sys.prefix, site.USER_BASE) if p]
    return [Path(__file__).resolve().parents[1] / name] + [Path(p) / "share" / "stbn-stream" / name for p in prefixes]


VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".m4v", ".mpg", ".mpeg", ".ts")


class DataUnavailable(RuntimeError):
    """Data that cannot be read or fetched (missing file, no network for pip, bad format)."""


# --- readers ------------------------------------------------------------------------------------


def read_video(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames ``start`` .. ``start + count`` of a video file as (N, H, W, 3) uint8 RGB (PyAV; OpenCV's
    decoder where PyAV is not installed, e.g. a prepared GPU image)."""
    path = Path(path)
    if not path.is_file():
        raise DataUnavailable(f"video not found: {path}")
    try:
        import av
    except ImportError:
        return _read_video_opencv(path, start, count)
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index < start:
                    continue
                if count is not None and len(frames) >= count:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as exc:
        raise DataUnavailable(f"cannot decode {path}: {exc}") from exc
    if not frames:
        raise DataUnavailable(f"{path} has no frames in the range start={start}, count={count}")
    return np.stack(frames)


def _read_video_opencv(path: Path, start: int, count: int | None) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        if not capture.isOpened():
            raise DataUnavailable(f"cannot decode {path} (OpenCV)")
        index = 0
        while count is None or len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
    finally:
        capture.release()
    if not frames:
        raise DataUnavailable(f"{path} has no frames in the range start={start}, count={count}")
    return np.stack(frames)


def read_rgb(file: Path) -> np.ndarray:
    """One image file as (H, W, 3) uint8 RGB."""
    image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    if image is None:
        raise DataUnavailable(f"cannot read image {file}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame_folder(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Image files of a folder, sorted by name, as (N, H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_dir():
        raise DataUnavailable(f"frame folder not found: {path}")
    files = image_files(path)[start : None if count is None else start + count]
    if not files:
        raise DataUnavailable(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    frames = [read_rgb(file) for file in files]
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataUnavailable(f"frames in {path} have different sizes: {sorted(shapes)[:3]}")
    return np.stack(frames)


def read_clip(path: str | Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """A video file or a folder of frames -> (N, H, W, 3) uint8 RGB."""
    path = Path(path)
    if path.is_dir():
        return read_frame_folder(path, start, count)
    return read_video(path, start, count)


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; float input is returned as float32."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32, copy=False)


# --- what a file says of its encoding -------------------------------------------------------------

# codecs that keep every pixel: frames from them carry the camera's noise untouched by an encoder
LOSSLESS_CODECS = {"ffv1", "huffyuv", "ffvhuff", "utvideo", "rawvideo", "png", "qtrle", "magicyuv", "v210", "r210"}


def input_compression(path: str | Path) -> Compression:
    """What a file or frame folder says of its encoding: a folder of JPEG frames or a lossy video:
    LOSSY; a lossless codec: NONE; PNG frames or anything unreadable: UNKNOWN (PNGs may hold a
    decoded stream)."""
    path = Path(path)
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        return Compression.LOSSY if suffixes and suffixes <= {".jpg", ".jpeg"} else Compression.UNKNOWN
    import av

    try:
        with av.open(str(path)) as container:
            codec = container.streams.video[0].codec_context.name
    except (av.error.FFmpegError, IndexError, OSError):
        return Compression.UNKNOWN
    return Compression.NONE if codec in LOSSLESS_CODECS else Compression.LOSSY
