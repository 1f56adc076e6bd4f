"""Capture sources: synthetic (with a drawn timestamp), file, USB/V4L2 camera, RTSP and any
GStreamer pipeline ending in appsink.

A source is opened, read frame by frame and closed by the :class:`~pipeline.stages.CaptureStage`,
which owns reconnection. ``read`` returns ``(image, pts)`` with image (H, W, 3) uint8 RGB, or None
at the end of a finite stream. A :class:`SourceError` is fatal (bad path, not a video, unknown
host); a :class:`SourceDisconnected` may be retried with back-off.

Kinds and the classes that serve them: :data:`SOURCES`; :func:`make_source` picks one per config.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.config import SourceBackend, SourceConfig, SourceKind
from pipeline.sources.base import Frame, Source, SourceDisconnected, SourceError
from pipeline.sources.gstreamer import GStreamerSource, check_host, rtsp_launch
from pipeline.sources.opencv import OpenCVSource
from pipeline.sources.pyav import PyAVFileSource, PyAVStreamSource
from pipeline.sources.synthetic import SyntheticSource, synthetic_scene


def _rtsp(make: Callable[[SourceConfig], Source]) -> Callable[[SourceConfig], Source]:
    """An RTSP source whose host is checked first (an unknown host fails at once, not on retries)."""

    def checked(config: SourceConfig) -> Source:
        check_host(config.uri, f"rtsp source {config.id!r}")
        return make(config)

    return checked


# (kind, backend) -> the source; backend AUTO is each kind's default (config.SourceKind and
# SourceBackend name what a config may ask for).
K, B = SourceKind, SourceBackend
SOURCES: dict[tuple[SourceKind, SourceBackend], Callable[[SourceConfig], Source]] = {
    (K.SYNTHETIC, B.AUTO): SyntheticSource,
    (K.FILE, B.AUTO): PyAVFileSource,
    (K.FILE, B.PYAV): PyAVFileSource,
    (K.FILE, B.OPENCV): OpenCVSource,
    (K.CAMERA, B.AUTO): lambda config: OpenCVSource(config, camera=True),
    (K.GSTREAMER, B.AUTO): GStreamerSource,
    (K.RTSP, B.AUTO): _rtsp(lambda config: GStreamerSource(config, rtsp_launch(config.uri))),
    (K.RTSP, B.PYAV): _rtsp(PyAVStreamSource),
    (K.RTSP, B.OPENCV): _rtsp(OpenCVSource),
}


def make_source(config: SourceConfig) -> Source:
    """The source for a config (backend ``auto``: GStreamer for RTSP, PyAV for files)."""
    make = SOURCES.get((config.kind, config.backend)) or SOURCES.get((config.kind, SourceBackend.AUTO))
    if make is None:
        raise SourceError(f"no {config.kind.value} source")
    return make(config)


__all__ = [
    "SOURCES",
    "Frame",
    "GStreamerSource",
    "OpenCVSource",
    "PyAVFileSource",
    "PyAVStreamSource",
    "Source",
    "SourceDisconnected",
    "SourceError",
    "SyntheticSource",
    "check_host",
    "make_source",
    "rtsp_launch",
    "synthetic_scene",
]
