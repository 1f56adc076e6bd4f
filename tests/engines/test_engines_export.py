"""The step graphs export (torch.export, ONNX with TensorRT-parsable ops), the ONNX files are
cached, and backend selection says what it picked."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
import torch

import stbn
from engines import BackendUnavailable, EngineConfig, create_engine
from engines.onnx_export import example_inputs, export_step_graphs
from stbn.step import step_graphs

OPS_FILE = Path(__file__).parents[2] / "engines" / "tensorrt_onnx_ops.txt"


# the camera preset at an odd size: its graphs pad the frame to whole 2x2 cells and crop back
@pytest.mark.parametrize(
    ("preset", "height", "width"), [("cpu-rt", 24, 40), ("gpu-rt", 24, 40), ("cpu-rt-camera", 21, 37)]
)
def test_every_step_graph_passes_torch_export(preset: str, height: int, width: int) -> None:
    model = stbn.build_model(preset).eval()
    inputs = example_inputs(model, height, width)
    for name, graph in step_graphs(model).items():
        exported = torch.export.export(graph, inputs[name], strict=False)
        out = exported.module()(*inputs[name])
        ref = graph(*inputs[name])
        ref = ref if isinstance(ref, tuple) else (ref,)
        out = out if isinstance(out, tuple) else (out,)
        for a, b in zip(out, ref):
            assert torch.allclose(a.float(), b.float(), atol=1e-5), name


@pytest.mark.parametrize(
    ("preset", "height", "width"), [("cpu-rt", 20, 36), ("gpu-rt", 20, 36), ("cpu-rt-camera", 21, 37)]
)
def test_onnx_graphs_use_only_tensorrt_parser_operators(tmp_path: Path, preset: str, height: int, width: int) -> None:
    supported = {line.strip() for line in OPS_FILE.read_text().splitlines() if line.strip() and line[0] != "#"}
    model = stbn.build_model(preset).eval()
    paths = export_step_graphs(model, height, width, tmp_path)
    assert set(paths) == set(step_graphs(model))
    used: set[str] = set()
    for path in paths.values():
        proto = onnx.load(str(path))
        assert proto.opset_import[0].version <= 17
        used |= {node.op_type for node in proto.graph.node}
        constants = {init.name for init in proto.graph.initializer}
        constants |= {out for node in proto.graph.node if node.op_type == "Constant" for out in node.output}
        for node in proto.graph.node:
            if node.op_type == "Conv":  # the parser takes weights and bias from initializers only
                assert set(node.input[1:]) <= constants, f"{path.name}: {node.name} has computed weights"
    assert "Gather" in used and "Conv" in used  # warps are index gathers, no GridSample
    assert used <= supported, f"not parsable by TensorRT: {sorted(used - supported)}"


def test_onnxruntime_reuses_its_cached_export(tmp_path: Path) -> None:
    model = stbn.build_model("cpu-rt").eval()
    config = EngineConfig(backend="onnxruntime", cache_dir=str(tmp_path))
    with create_engine(config, model=model) as engine:
        engine.build(16, 24)
    files = sorted(tmp_path.rglob("*.onnx"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert len(files) == len(step_graphs(model))
    with create_engine(config, model=model) as engine:
        engine.build(16, 24)
        engine.warmup(1)
    assert [f.stat().st_mtime_ns for f in sorted(tmp_path.rglob("*.onnx"))] == stamps
    with create_engine(config, model=stbn.build_model("cpu-rt").eval()) as engine:
        engine.build(16, 24)  # other weights: another cache entry
    assert len(list(tmp_path.rglob("*.onnx"))) == 2 * len(files)


def test_auto_backend_logs_its_choice(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    model = stbn.build_model("cpu-rt").eval()
    with caplog.at_level(logging.INFO, logger="engines"):
        engine = create_engine(EngineConfig(cache_dir=str(tmp_path)), model=model)
    expected = "onnxruntime" if not torch.cuda.is_available() else engine.name
    assert engine.name == expected
    assert any(f"auto -> {engine.name}" in r.getMessage() for r in caplog.records)


def test_tensorrt_missing_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; this checks the message on machines without TensorRT")
    with pytest.raises(BackendUnavailable, match="CUDA device"):
        create_engine(EngineConfig(backend="tensorrt"), model=stbn.build_model("cpu-rt"))


def test_engine_config_validation() -> None:
    with pytest.raises(ValueError, match="backend"):
        EngineConfig(backend="tvm")
    with pytest.raises(ValueError, match="precision"):
        EngineConfig(precision="int4")
    with pytest.raises(BackendUnavailable, match="fp16 autocast needs CUDA"):
        create_engine(EngineConfig(backend="torch", precision="fp16", device="cpu"), model=stbn.build_model("cpu-rt"))
