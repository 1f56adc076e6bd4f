"""OpenVINO backend (CPU): the same exported ONNX step graphs as ONNX Runtime, compiled by
OpenVINO's CPU plugin for latency (one stream, the configured threads). ``precision: fp32`` pins
fp32 arithmetic (OpenVINO would otherwise pick bf16 on a CPU that has it); ``bf16`` asks for it."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailable, Engine, EngineConfig, cache_path
from engines.onnx_export import engine_key, export_step_graphs
from stbn.model import STBN
from stbn.step import GRAPHS

_PRECISION_HINT = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoEngine(Engine):
    name = "openvino"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        try:
            import openvino
        except ImportError as exc:
            raise BackendUnavailable("the openvino backend needs the 'openvino' package: pip install openvino") from exc
        if config.precision not in _PRECISION_HINT:
            raise BackendUnavailable(f"the openvino backend runs fp32 or bf16 on the CPU, not {config.precision}")
        if config.device not in ("auto", "cpu"):
            raise BackendUnavailable(f"the openvino backend runs on the CPU here, not {config.device!r}")
        super().__init__(config, model)
        self._ov = openvino
        self._core = openvino.Core()
        self._requests: dict[str, Any] = {}
        self._input_names: dict[str, list[str]] = {}

    def describe(self) -> str:
        return f"openvino {self._ov.__version__} (CPU, {self.config.precision})"

    def build(self, height: int, width: int) -> None:
        self._requests, self._input_names = self._compile(self.model, height, width)
        self.resolution = (height, width)

    def _compile(
        self, model: STBN, height: int, width: int, directory: Path | None = None
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Export (or find in the ONNX Runtime backend's cache, unless ``directory`` is given) the
        ONNX step graphs, then read and compile each for the CPU."""
        if directory is None:
            import onnxruntime

            # the ONNX files are the same as the onnxruntime backend's: share its cache entry
            key = engine_key(model, height, width, {"format": "onnx", "ort": onnxruntime.__version__})
            directory = cache_path(self.config, f"onnx-{key}", "")
        paths = export_step_graphs(model, height, width, directory)
        properties: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": _PRECISION_HINT[self.config.precision],
        }
        if self.config.threads:
            properties["INFERENCE_NUM_THREADS"] = self.config.threads
        requests, names = {}, {}
        for name, path in paths.items():
            compiled = self._core.compile_model(self._core.read_model(str(path)), "CPU", properties)
            requests[name] = compiled.create_infer_request()
            names[name] = [port.get_any_name() for port in compiled.inputs]
        return requests, names

    def _prepare_weights(self, state_dict: dict[str, Any]) -> tuple[STBN, dict[str, Any], dict[str, list[str]]]:
        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(state_dict)
        # adapted weights are one-offs: exported to a temporary folder, compiled, deleted
        with tempfile.TemporaryDirectory(prefix="stbn-swap-") as tmp:
            return (model, *self._compile(model.eval(), *self.resolution, Path(tmp)))

    def swap_weights(self, prepared: tuple[STBN, dict[str, Any], dict[str, list[str]]]) -> None:
        self.model, self._requests, self._input_names = prepared

    def _run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        used = self._input_names[graph]
        # the exporter drops inputs a graph does not read (e.g. frames under zero flow)
        feed = {name: value for name, value in zip(GRAPHS[graph].inputs, inputs) if name in used}
        request = self._requests[graph]
        request.infer(feed)
        # copies: the request's output buffers are overwritten by its next run
        return tuple(np.array(request.get_output_tensor(i).data) for i in range(len(request.model_outputs)))

    def upload(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array)

    def download(self, handle: np.ndarray) -> np.ndarray:
        return np.asarray(handle)

    def close(self) -> None:
        self._requests.clear()
