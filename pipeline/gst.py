"""Loading GStreamer (PyGObject) once, for the GStreamer sources and the RTSP server alike."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any


class GStreamerUnavailable(RuntimeError):
    """PyGObject or a GStreamer namespace is missing; callers turn this into their own error."""


def _preload_freetype() -> None:
    """Load matplotlib's bundled FreeType before GStreamer's plugins load the system one: importing
    matplotlib after rtspsrc has run segfaults (seen with GStreamer 1.22 + matplotlib wheels)."""
    with contextlib.suppress(ImportError):
        import matplotlib.ft2font  # noqa: F401


def load_gstreamer(*namespaces: str) -> tuple[Any, ...]:
    """``Gst`` followed by the other namespaces asked for (e.g. "GstRtspServer", "GLib"), initialised."""
    _preload_freetype()
    try:
        import gi

        gi.require_version("Gst", "1.0")
        for name in namespaces:
            if name != "GLib":
                gi.require_version(name, "1.0")
        from gi.repository import Gst

        modules = [Gst, *(importlib.import_module(f"gi.repository.{name}") for name in namespaces)]
    except (ImportError, ValueError) as exc:
        raise GStreamerUnavailable(f"GStreamer (PyGObject) is not available: {exc}") from None
    Gst.init(None)
    return tuple(modules)
