"""Build the parts of a pipeline from its config: sources, engines, streaming denoisers, rings,
stages, adapters and sinks. Nothing is started or opened here (sockets, servers and threads are
the :class:`~pipeline.runner.Pipeline`'s); what fails to build is closed again."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines import Engine, EngineError, create_camera_engine, create_engine
from pipeline.config import PipelineConfig, SourceConfig, SourceKind
from pipeline.frame import FrameRecord
from pipeline.profiling import LatencyProfiler
from pipeline.ring import OverflowPolicy, RingBuffer
from pipeline.sinks import Sink, VideoFileSink
from pipeline.sources import Source, SourceError, make_source
from pipeline.stages import CaptureStage, Denoiser, InferenceStage, StreamResume, StreamState
from stbn.checkpoint import CheckpointError
from stbn.io import input_compression
from stbn.noise_estimation import Compression, NoiseConfig
from stbn.streaming import StreamingDenoiser

if TYPE_CHECKING:
    from pipeline.adaptation import OnlineAdapter
    from pipeline.rtsp_server import RtspSink


class BuildError(RuntimeError):
    """A part that cannot be built (bad source, checkpoint or engine, a missing package)."""


@dataclass
class Stream:
    """One source's parts: its source, ring, capture and inference stages, state and adapter."""

    source: Source
    ring: RingBuffer[FrameRecord]
    capture: CaptureStage
    inference: InferenceStage
    state: StreamState
    adapter: OnlineAdapter | None = None


@dataclass
class PipelineParts:
    streams: dict[str, Stream]
    engines: list[Engine]
    out: RingBuffer[FrameRecord]  # every stream's denoised records, to the publish stage
    profiler: LatencyProfiler
    sinks: dict[str, list[Sink]] = field(default_factory=dict)
    rtsp: RtspSink | None = None
    engine_description: str = ""


def stream_noise(noise: NoiseConfig, source: SourceConfig) -> NoiseConfig:
    """The stream's noise settings: the configured ones, with what its source says of compression
    where the config does not say (noise.compression): RTSP carries H.264/HEVC/MJPEG; a file says
    its codec (stbn.io.input_compression); a camera's format is not reported through OpenCV,
    synthetic frames and GStreamer pipelines could be anything."""
    if noise.compression is not Compression.UNKNOWN:
        return noise
    if source.kind is SourceKind.RTSP:
        return dataclasses.replace(noise, compression=Compression.LOSSY)
    if source.kind is SourceKind.FILE:
        return dataclasses.replace(noise, compression=input_compression(source.uri))
    return noise


def build_pipeline(
    config: PipelineConfig,
    model: Any = None,
    denoiser_factory: Callable[[str], Denoiser] | None = None,
    sources: dict[str, Source] | None = None,
    resume: Mapping[str, StreamResume] | None = None,
) -> PipelineParts:
    """The parts for ``config``; ``model``, ``denoiser_factory`` and ``sources`` replace the
    configured checkpoint, engine + denoiser and sources (tests, benchmarks); ``resume`` says where
    a stream restarted in this process goes on from."""
    if config.adapt.enabled and denoiser_factory is not None:
        raise BuildError("adapt.enabled needs the configured engine, not a denoiser factory")
    out: RingBuffer[FrameRecord] = RingBuffer(8 * len(config.sources) + 8, OverflowPolicy.BLOCK, "out")
    parts = PipelineParts({}, [], out, LatencyProfiler([s.id for s in config.sources], config.report.max_frames))
    try:
        for sc in config.sources:
            source = (sources or {}).get(sc.id) or make_source(sc)
            restart = (resume or {}).get(sc.id)
            state = StreamState(sc.id, restart)
            adapter = None
            if denoiser_factory is not None:
                denoiser = denoiser_factory(sc.id)
            else:
                engine = create_engine(config.engine, model)
                parts.engines.append(engine)
                parts.engine_description = engine.describe()
                camera_engine = create_camera_engine(config.engine, engine)
                if camera_engine is not None:
                    parts.engines.append(camera_engine)
                noise = stream_noise(config.noise, sc)
                denoiser = StreamingDenoiser(engine, config.lookahead, noise, camera_engine)
                if config.adapt.enabled:
                    from pipeline.adaptation import OnlineAdapter  # training code: loaded only when asked

                    metadata = engine.checkpoint.metadata if engine.checkpoint is not None else {}
                    adapter = OnlineAdapter(sc.id, engine, config.adapt, noise, state, metadata)
            ring: RingBuffer[FrameRecord] = RingBuffer(sc.ring_slots, sc.ring_policy, f"ring-{sc.id}")
            capture = CaptureStage(source, sc, ring, state, restart.first_seq if restart else 0)
            inference = InferenceStage(sc.id, ring, denoiser, out, state, adapter)
            parts.streams[sc.id] = Stream(source, ring, capture, inference, state, adapter)
            if config.outputs.video_dir:
                path = Path(config.outputs.video_dir) / f"{sc.id}.mp4"
                parts.sinks.setdefault(sc.id, []).append(VideoFileSink(path, sc.fps, config.outputs.video_codec))
        if config.outputs.rtsp.enabled:
            from pipeline.rtsp_server import RtspSink

            parts.rtsp = RtspSink(config.outputs.rtsp, {s.id: s.fps for s in config.sources})
            for sc in config.sources:
                parts.sinks.setdefault(sc.id, []).append(parts.rtsp.sink(sc.id))
    except (SourceError, CheckpointError, EngineError, FileNotFoundError, ImportError, OSError) as exc:
        for engine in parts.engines:
            engine.close()
        raise BuildError(_first_line(exc)) from None
    return parts


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
