"""One conformance test for every backend: the same streamed frames as the PyTorch fp32 reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import stbn
from engines import BackendUnavailable, EngineConfig, create_engine
from stbn.noise_estimation import NoiseConfig, NoiseMode
from stbn.streaming import StreamingDenoiser
from tests.engines.clips import moving_clip

# (id, config changes, max mean |diff| in uint8 levels, min PSNR against the reference in dB).
# fp32 backends differ only by summation order; a flipped nearest-neighbour rounding of the flow
# (a sub-1e-6 flow difference at an exact .5) moves a few hidden-state pixels, hence mean and
# PSNR bounds rather than exact equality. bf16 keeps 8 mantissa bits: a looser bound.
BACKENDS = [
    ("torch-channels_last", {"backend": "torch", "channels_last": True}, 0.2, 45.0),
    ("torch-bf16", {"backend": "torch", "precision": "bf16"}, 1.5, 32.0),
    ("torch-compile", {"backend": "torch", "compile": True}, 0.2, 45.0),
    ("onnxruntime", {"backend": "onnxruntime"}, 0.2, 45.0),
    ("openvino", {"backend": "openvino"}, 0.2, 45.0),
    ("openvino-bf16", {"backend": "openvino", "precision": "bf16"}, 1.5, 32.0),
    ("tensorrt-fp16", {"backend": "tensorrt", "precision": "fp16", "device": "cuda"}, 1.0, 35.0),
]


def _run(config: EngineConfig, model: stbn.STBN, clip: np.ndarray) -> np.ndarray:
    with create_engine(config, model=model) as engine:
        denoiser = StreamingDenoiser(engine, 2, NoiseConfig(NoiseMode.FIXED, 20.0))
        out = [f.image for f in denoiser.stream(clip)]
    return np.stack(out).astype(np.float64)


# one configuration per backend, for the contracts that hold whatever the precision
ONE_PER_BACKEND = [
    ("torch", {"backend": "torch"}),
    ("onnxruntime", {"backend": "onnxruntime"}),
    ("openvino", {"backend": "openvino"}),
    ("tensorrt", {"backend": "tensorrt", "device": "cuda"}),
]


# the main model, and the camera model's layout (hidden states on the frame's 2x2 cells)
PRESETS = ["cpu-rt", "cpu-rt-camera"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize(("name", "changes", "max_mean", "min_psnr"), BACKENDS, ids=[b[0] for b in BACKENDS])
def test_backend_matches_the_pytorch_fp32_reference(
    name: str, changes: dict, max_mean: float, min_psnr: float, preset: str, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = stbn.build_model(preset).eval()
    clip = moving_clip(6, 27, 45, 20.0)
    base = EngineConfig(backend="torch", cache_dir=str(tmp_path))
    try:
        got = _run(base.replace(**changes), model, clip)
    except BackendUnavailable as exc:
        pytest.skip(f"{name} unavailable here: {exc}")
    ref = _run(base, model, clip)
    diff = np.abs(got - ref)
    psnr = 10 * np.log10(255.0**2 / max(float(np.mean(diff**2)), 1e-12))
    assert got.shape == ref.shape
    assert diff.mean() <= max_mean, f"mean |diff| {diff.mean():.4f}, PSNR {psnr:.1f} dB"
    assert psnr >= min_psnr, f"PSNR vs reference {psnr:.1f} dB"


@pytest.mark.parametrize(("name", "changes"), ONE_PER_BACKEND, ids=[b[0] for b in ONE_PER_BACKEND])
def test_swapped_weights_run_like_a_fresh_engine_with_them(name: str, changes: dict, tmp_path: Path) -> None:
    """Online adaptation's contract: prepare (slow, off the hot path), swap between frames, and the
    next frames are those of an engine built with the new weights; weights of another shape are refused."""
    from engines import EngineError

    torch.manual_seed(0)
    before = stbn.build_model("cpu-rt").eval()
    torch.manual_seed(1)
    after = stbn.build_model("cpu-rt").eval()
    clip = moving_clip(4, 27, 45, 20.0)
    config = EngineConfig(cache_dir=str(tmp_path), **changes)
    try:
        engine = create_engine(config, model=before)
    except BackendUnavailable as exc:
        pytest.skip(f"{name} unavailable here: {exc}")
    with engine:
        engine.build(27, 45)
        try:
            prepared = engine.prepare_weights(after.state_dict())
        except EngineError as exc:
            pytest.skip(f"{name} cannot swap weights: {exc}")
        engine.swap_weights(prepared)
        torch.manual_seed(2)
        engine.swap_weights(engine.prepare_weights(stbn.build_model("cpu-rt").state_dict()))
        engine.swap_weights(engine.prepare_weights(after.state_dict()))
        exported = [p for p in tmp_path.iterdir() if p.name.startswith("onnx-")]
        assert len(exported) <= 1, exported  # swaps leave nothing in the cache (only the built graphs)
        denoiser = StreamingDenoiser(engine, 2, NoiseConfig(NoiseMode.FIXED, 20.0))
        got = [f.image for f in denoiser.stream(clip)]
        wrong = stbn.build_model("cpu-rt", channels=8).state_dict()
        with pytest.raises(EngineError, match="do not fit"):
            engine.prepare_weights(wrong)
    want = _run(config, after, clip)
    assert np.abs(np.stack(got).astype(np.float64) - want).mean() <= 0.2
    assert np.abs(np.stack(got).astype(np.float64) - _run(config, before, clip)).mean() > 1.0


@pytest.mark.parametrize(("name", "changes"), ONE_PER_BACKEND, ids=[b[0] for b in ONE_PER_BACKEND])
def test_every_backend_checks_graph_calls_against_the_step_contract(name: str, changes: dict, tmp_path: Path) -> None:
    """Engine.run is a template: built? a graph of this model? as many inputs as it names?"""
    from engines import EngineError

    torch.manual_seed(0)
    causal = stbn.build_model("cpu-rt", bidirectional=False).eval()
    try:
        engine = create_engine(EngineConfig(cache_dir=str(tmp_path), **changes), model=causal)
    except BackendUnavailable as exc:
        pytest.skip(f"{name} unavailable here: {exc}")
    with engine:
        frame = engine.upload(np.zeros((16, 32, 3), np.uint8))
        with pytest.raises(EngineError, match="build"):
            engine.run("prepare", frame)
        engine.build(16, 32)
        (x,) = engine.run("prepare", frame)
        with pytest.raises(EngineError, match="no graph 'backward'"):
            engine.run("backward", x)  # a causal model has no backward graphs
        with pytest.raises(EngineError, match=r"takes 2 inputs \('prev', 'cur'\), got 1"):
            engine.run("flow_to_prev", x)
        engine.warmup(1)  # the real streaming loop over every graph the model has
        noise = engine.upload(np.array([[0.0, (20 / 255) ** 2]], np.float32))
        (h,) = engine.run("forward_start", x, noise)
        (image,) = engine.run("fuse", x, noise, h)  # a causal fuse reads the forward state only
        assert engine.download(image).shape == (16, 32, 3)
