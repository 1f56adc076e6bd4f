"""Live stages: capture -> ring buffer -> inference -> publish, with latency profiling.

Data flows one way: a source (:mod:`pipeline.sources`) is read by a :class:`CaptureStage`
into a bounded :class:`RingBuffer`; an :class:`InferenceStage` (one per stream, each with its
own engine and streaming state) denoises and hands frames to the :class:`PublishStage`, which
sends them over ZeroMQ and to the configured sinks. ``build.build_pipeline`` builds the parts and
``runner.Pipeline`` runs them.
"""

from __future__ import annotations

from pipeline.frame import STAGES, FrameRecord
from pipeline.ring import POLICIES, OverflowPolicy, RingBuffer, RingClosed

__all__ = ["POLICIES", "STAGES", "FrameRecord", "OverflowPolicy", "RingBuffer", "RingClosed"]
