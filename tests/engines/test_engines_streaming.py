"""Causal-window streaming: equals offline with enough look-ahead, never looks past L frames,
flushes, resets on gaps, and holds bounded memory."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import stbn
from engines.base import EngineConfig
from engines.torch_engine import TorchEngine
from stbn.finishing import finish_camera_frame
from stbn.noise_estimation import Compression, NoiseConfig, NoiseMode
from stbn.streaming import FrameSizeError, StreamingDenoiser
from tests.engines.clips import moving_clip, responsive_model

SIGMA = 20.0


def _stream(engine: Any, clip: np.ndarray, lookahead: int, sigma: float = SIGMA) -> list[Any]:
    # clipped=False: the raw propagation is compared with the model itself
    return _stream_with(engine, clip, lookahead, NoiseConfig(NoiseMode.FIXED, sigma, clipped=False))


def _offline_uint8(model: stbn.STBN, clip: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float().unsqueeze(0) / 255.0
    with torch.no_grad():
        out = model(x, SIGMA / 255.0)[0].permute(0, 2, 3, 1).numpy()
    return (out * 255.0 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("lookahead", [5, 8])
def test_full_lookahead_stream_equals_offline_bidirectional(tiny_model: stbn.STBN, lookahead: int) -> None:
    clip = moving_clip(6, 29, 41, SIGMA)
    engine = TorchEngine(EngineConfig(backend="torch"), model=tiny_model)
    got = np.stack([f.image for f in _stream(engine, clip, lookahead)])
    # Same fp32 graphs in the same order: identical up to the final uint8 rounding (1 level).
    diff = np.abs(got.astype(int) - _offline_uint8(tiny_model, clip).astype(int))
    assert diff.max() <= 1


def test_a_model_on_pixel_cells_streams_as_it_runs_offline() -> None:
    """The camera preset's hidden states are at half resolution (the frame's 2x2 cells); an odd-sized
    frame is padded to whole cells and cropped back."""
    model = responsive_model("cpu-rt-camera")
    clip = moving_clip(5, 29, 41, SIGMA)
    engine = TorchEngine(EngineConfig(backend="torch"), model=model)
    got = np.stack([f.image for f in _stream(engine, clip, 4)])
    assert got.shape == clip.shape
    diff = np.abs(got.astype(int) - _offline_uint8(model, clip).astype(int))
    assert diff.max() <= 1
    assert np.abs(got.astype(int) - clip.astype(int)).mean() > 1.0  # the network changed the frames


@pytest.mark.parametrize("lookahead", [0, 2])
def test_outputs_never_depend_on_frames_beyond_the_lookahead(lookahead: int) -> None:
    clip = moving_clip(7, 24, 32, SIGMA, seed=1)
    altered = clip.copy()
    altered[4:] = 255  # a different future from frame 4 on
    engine = TorchEngine(EngineConfig(backend="torch"), model=responsive_model())
    # A high assumed noise level makes the output lean on the prior, so that the dependence on
    # other frames shows above the uint8 rounding.
    a = {f.seq: f.image for f in _stream(engine, clip, lookahead, sigma=150.0)}
    b = {f.seq: f.image for f in _stream(engine, altered, lookahead, sigma=150.0)}
    # Frame k is emitted when frame k + L arrives: frames k < 4 - L saw only unaltered frames.
    for k in range(4 - lookahead):
        assert np.array_equal(a[k], b[k]), k
    assert not np.array_equal(a[4 - lookahead], b[4 - lookahead])  # the dependence is real


def test_emission_order_flush_and_gap_reset(tiny_model: stbn.STBN) -> None:
    clip = moving_clip(8, 16, 20, SIGMA)
    engine = TorchEngine(EngineConfig(backend="torch"), model=tiny_model)
    denoiser = StreamingDenoiser(engine, 2, NoiseConfig(NoiseMode.FIXED, SIGMA))
    emitted, tags = [], []
    seqs = [0, 1, 2, 3, 10, 11, 12, 13]  # a gap after 3
    for frame, seq in zip(clip, seqs):
        ready = denoiser.push(frame, seq, tag=f"record {seq}")
        assert denoiser.pending <= 2
        emitted += [f.seq for f in ready]
        tags += [f.tag for f in ready]
        if seq == 1:
            assert emitted == []  # L = 2: nothing before the third frame
        if seq == 10:
            assert emitted == [0, 1, 2, 3]  # the gap flushed the old stream first
    flushed = denoiser.flush()
    emitted += [f.seq for f in flushed]
    tags += [f.tag for f in flushed]
    assert emitted == seqs
    assert tags == [f"record {seq}" for seq in seqs]  # each caller's record comes back with its frame
    assert denoiser.resets == 1


class CountingEngine(TorchEngine):
    """The real PyTorch engine, counting graph calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        self.calls[graph] = self.calls.get(graph, 0) + 1
        return super().run(graph, *inputs)


def test_flows_are_computed_once_per_frame_pair(tiny_model: stbn.STBN) -> None:
    engine = CountingEngine(EngineConfig(backend="torch"), model=tiny_model)
    _stream(engine, moving_clip(9, 16, 16, SIGMA), 4)
    assert engine.calls["pair_flows"] == 8 and "flow_to_prev" not in engine.calls
    assert engine.calls["fuse"] == 9
    assert engine.calls["forward"] + engine.calls["forward_start"] == 9
    # Causal (L = 0): no backward step reads prev->cur, so only the forward flow is computed.
    causal = CountingEngine(EngineConfig(backend="torch"), model=tiny_model)
    _stream(causal, moving_clip(9, 16, 16, SIGMA), 0)
    assert causal.calls["flow_to_prev"] == 8 and "pair_flows" not in causal.calls


def test_bad_frames_are_clear_errors(tiny_model: stbn.STBN) -> None:
    engine = TorchEngine(EngineConfig(backend="torch"), model=tiny_model)
    denoiser = StreamingDenoiser(engine, 1, NoiseConfig(NoiseMode.FIXED, SIGMA))
    denoiser.push(np.zeros((16, 24, 3), np.uint8), 0)
    with pytest.raises(FrameSizeError, match="changed mid-stream"):
        denoiser.push(np.zeros((18, 24, 3), np.uint8), 1)
    with pytest.raises(FrameSizeError, match="uint8"):
        denoiser.push(np.zeros((16, 24, 3), np.float32), 1)
    with pytest.raises(ValueError, match="lookahead"):
        StreamingDenoiser(engine, 9)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_memory_does_not_grow_with_stream_length(tiny_model: stbn.STBN) -> None:
    engine = TorchEngine(EngineConfig(backend="torch"), model=tiny_model)
    denoiser = StreamingDenoiser(engine, 2, NoiseConfig(NoiseMode.FIXED, SIGMA))
    frames = moving_clip(10, 32, 40, SIGMA)
    level = 0
    for i in range(500):
        denoiser.push(frames[i % 10], i)
        if i == 49:
            gc.collect()
            level = _rss_bytes()
    gc.collect()
    growth = _rss_bytes() - level
    # One 32x40 frame with its flows and hidden states is ~0.15 MB: 450 kept frames would be ~65 MB.
    assert growth < 8 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 450 frames"


def test_correlated_noise_runs_on_the_tiled_phases_and_a_switch_restarts_the_stream() -> None:
    from stbn.camera import CameraModel
    from stbn.noise_estimation import Correlation
    from stbn.phases import PhaseTiling

    model = responsive_model()
    clip = moving_clip(4, 16, 22, SIGMA)
    tiling = PhaseTiling(16, 22)
    engine = TorchEngine(EngineConfig(backend="torch"), model=model)
    correlated = _stream_with(engine, clip, 1, NoiseConfig(NoiseMode.FIXED, SIGMA, correlation=Correlation.CORRELATED))
    engine = TorchEngine(EngineConfig(backend="torch"), model=model)
    on_tiles = _stream_with(engine, tiling.tile(clip), 1, NoiseConfig(NoiseMode.FIXED, SIGMA))
    for a, b in zip(correlated, on_tiles, strict=True):
        assert np.array_equal(a.image, tiling.untile(b.image))
    assert not np.array_equal(correlated[2].image, _stream(engine, clip, 1)[2].image)  # the layout matters

    # blind: white noise, then a camera's; every frame comes out once, in order, after one restart
    camera = CameraModel(shot=8e-3, read=CameraModel.read_for(8e-3))
    flat = np.full((4, 48, 64, 3), 0.45, np.float32)
    white = np.stack([np.clip(128 + np.random.default_rng(k).normal(0, 20, (48, 64, 3)), 0, 255) for k in range(4)])
    frames = np.concatenate([white.round().astype(np.uint8), camera.simulate(flat, np.random.default_rng(9))])
    engine = TorchEngine(EngineConfig(backend="torch"), model=model)
    denoiser = StreamingDenoiser(engine, 2, NoiseConfig(NoiseMode.ESTIMATE, smoothing=0.0, interval=1))
    out = []
    for seq, frame in enumerate(frames):
        out += denoiser.push(frame, seq)
        if seq == 3:
            assert len(out) == 2 and denoiser.pending == 2
    out += denoiser.flush()
    assert [f.seq for f in out] == list(range(8))
    assert [f.correlated for f in out] == [False] * 4 + [True] * 4
    assert denoiser.resets == 0  # a layout switch keeps the noise tracker (no reset of the stream)


def _stream_with(engine: Any, clip: np.ndarray, lookahead: int, noise: NoiseConfig) -> list[Any]:
    return list(StreamingDenoiser(engine, lookahead, noise).stream(clip))


def test_a_camera_model_takes_the_correlated_frames_whole_and_the_main_model_the_white_ones() -> None:
    from stbn.camera import CameraModel
    from stbn.noise_estimation import Correlation, measured_camera_level, scale_levels

    torch.manual_seed(3)
    main, camera_model = responsive_model(), stbn.build_model("cpu-rt-camera").eval()
    clip = moving_clip(4, 16, 22, SIGMA)
    fixed = NoiseConfig(NoiseMode.FIXED, SIGMA, correlation=Correlation.CORRELATED)
    main_engine = TorchEngine(EngineConfig(backend="torch"), model=main)
    camera_engine = TorchEngine(EngineConfig(backend="torch"), model=camera_model)
    got = list(StreamingDenoiser(main_engine, 1, fixed, camera_engine).stream(clip))
    alone = TorchEngine(EngineConfig(backend="torch"), model=camera_model)
    want = _stream_with(alone, clip, 1, NoiseConfig(NoiseMode.FIXED, SIGMA))  # the whole frame, no phases
    for a, b in zip(got, want, strict=True):  # the camera model's output, then finished (stbn.finishing)
        assert a.correlated and np.array_equal(a.image, finish_camera_frame(b.image, SIGMA, Compression.UNKNOWN))
    assert main_engine.resolution is None  # the main model never ran

    # blind: white noise stays on the main model; a camera's goes to the camera model at the level
    # it was trained with (the 2x2-averaged view's), after one restart of the propagation
    camera = CameraModel(shot=8e-3, read=CameraModel.read_for(8e-3))
    flat = np.full((4, 48, 64, 3), 0.45, np.float32)
    white = np.stack([np.clip(128 + np.random.default_rng(k).normal(0, 20, (48, 64, 3)), 0, 255) for k in range(4)])
    noisy_camera = camera.simulate(flat, np.random.default_rng(9))
    frames = np.concatenate([white.round().astype(np.uint8), noisy_camera])
    main_engine = TorchEngine(EngineConfig(backend="torch"), model=main)
    camera_engine = TorchEngine(EngineConfig(backend="torch"), model=camera_model)
    blind = NoiseConfig(NoiseMode.ESTIMATE, smoothing=0.0, interval=1)
    out = list(StreamingDenoiser(main_engine, 2, blind, camera_engine).stream(frames))
    assert [f.seq for f in out] == list(range(8))
    assert [f.correlated for f in out] == [False] * 4 + [True] * 4
    assert out[-1].sigma == pytest.approx(measured_camera_level(scale_levels(noisy_camera[-1])), rel=1e-4)
    assert main_engine.resolution == camera_engine.resolution == (48, 64)
