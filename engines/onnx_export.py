"""Export of the streaming step graphs to ONNX (static shapes per resolution), with a disk cache."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

import stbn
from engines.base import EngineError
from stbn.config import STBNConfig
from stbn.model import STBN
from stbn.step import GRAPHS, example_inputs, step_graphs

OPSET = 17


def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def graph_code_hash() -> str:
    """Hash of the model source: a change to the graph code invalidates cached exports."""
    root = Path(stbn.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.glob("*.py")) + sorted((root / "flow").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def engine_key(model: STBN, height: int, width: int, extra: dict[str, str]) -> str:
    """Cache key: weights hash, config, model code, resolution and whatever the backend adds
    (precision, library version, device name)."""
    payload = json.dumps(
        {
            "weights": weights_hash(model),
            "config": model.config.to_dict(),
            "code": graph_code_hash(),
            "hw": [height, width],
            **extra,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def export_graph(graph: nn.Module, name: str, inputs: tuple[torch.Tensor, ...]) -> bytes:
    """One graph to ONNX bytes (TorchScript-based exporter, constant folding, static shapes)."""
    buffer = io.BytesIO()
    # Shape arithmetic on Python ints is intended: every graph is static per resolution.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph,
            inputs,
            buffer,
            input_names=list(GRAPHS[name].inputs[: len(inputs)]),
            output_names=list(GRAPHS[name].outputs),
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return _fold_constant_weights(buffer.getvalue())


def _fold_constant_weights(model_bytes: bytes) -> bytes:
    """Fold nodes whose inputs are all constants into initializers: TensorRT's ONNX parser wants
    Conv weights and biases as initializers. The case seen: the exporter merges equal initializers
    (the all-zero biases of a freshly initialised model) and feeds the copies through Identity."""
    import onnx
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load_from_string(model_bytes)
    graph = proto.graph
    known = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    keep, folded = [], False
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type in _FOLDABLE and inputs and all(name in known for name in inputs):
            single = onnx.helper.make_model(
                onnx.helper.make_graph(
                    [node],
                    "fold",
                    [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in inputs],
                    [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in node.output],
                ),
                opset_imports=proto.opset_import,
            )
            values = ReferenceEvaluator(single).run(None, {n: known[n] for n in inputs})
            for name, value in zip(node.output, values, strict=True):
                known[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
            folded = True
        else:
            keep.append(node)
    if not folded:
        return model_bytes
    del graph.node[:]
    graph.node.extend(keep)
    return proto.SerializeToString()


_FOLDABLE = {"Identity", "Slice", "Expand", "Mul", "Unsqueeze", "Reshape", "Concat", "Squeeze"}


def export_step_graphs(model: STBN, height: int, width: int, directory: Path) -> dict[str, Path]:
    """Every step graph of ``model`` as ONNX files in ``directory``, exported when not cached.

    The export runs in a fresh interpreter: the TorchScript tracer aborts the whole process
    (SIGABRT, no message) once GStreamer's RTSP elements have run in it, as they have in a live
    pipeline, and the child also keeps the tracer's memory out of the long-running process.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.onnx" for name in step_graphs(model)}
    if not all(path.exists() for path in paths.values()):
        _export_in_child_process(model, height, width, directory)
    return paths


def _export_here(model: STBN, height: int, width: int, directory: Path) -> None:
    model = model.eval()
    inputs = example_inputs(model, height, width)
    for name, graph in step_graphs(model).items():
        path = directory / f"{name}.onnx"
        if not path.exists():
            tmp = path.with_suffix(".onnx.tmp")
            tmp.write_bytes(export_graph(graph, name, inputs[name]))
            tmp.replace(path)  # atomic: a crash never leaves a half-written cached graph


def _export_in_child_process(model: STBN, height: int, width: int, directory: Path) -> None:
    weights = directory / "model-for-export.pt"
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, str(weights))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "engines.onnx_export", str(weights), str(height), str(width), str(directory)],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        weights.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise EngineError(f"ONNX export failed (exit {done.returncode}): {' | '.join(tail)}")


def _main(argv: list[str]) -> None:
    weights, height, width, directory = argv
    payload = torch.load(weights, map_location="cpu", weights_only=True)
    model = STBN(STBNConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    _export_here(model, int(height), int(width), Path(directory))


if __name__ == "__main__":
    _main(sys.argv[1:])
