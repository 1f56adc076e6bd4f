"""See the streams: the live viewer page (``viewer:`` in the pipeline config) and the before/after
page of a denoised file (``stbn denoise --compare``)."""

from pipeline.viewer.server import PreviewSink, ViewerError, ViewerServer

__all__ = ["PreviewSink", "ViewerError", "ViewerServer"]
