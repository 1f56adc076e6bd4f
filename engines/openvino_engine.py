"""OpenVINO backend (CPU): the same exported ONNX step graphs as ONNX Runtime, compiled by
OpenVINO's CPU plugin for latency (one stream, the configured threads). ``precision: fp32`` pins
fp32 arithmetic (OpenVINO would otherwise pick bf16 on a CPU that has it); ``bf16`` asks for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailable, EngineConfig, Precision
from engines.onnx_graphs import Loaded, OnnxGraphEngine
from stbn.model import STBN

_PRECISION_HINT = {Precision.FP32: "f32", Precision.BF16: "bf16"}


class OpenVinoEngine(OnnxGraphEngine):
    name = "openvino"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        try:
            import openvino
        except ImportError as exc:
            raise BackendUnavailable("the openvino backend needs the 'openvino' package: pip install openvino") from exc
        if config.precision not in _PRECISION_HINT:
            raise BackendUnavailable(f"the openvino backend runs fp32 or bf16 on the CPU, not {config.precision.value}")
        if config.device not in ("auto", "cpu"):
            raise BackendUnavailable(f"the openvino backend runs on the CPU here, not {config.device!r}")
        super().__init__(config, model)
        self._ov = openvino
        self._core = openvino.Core()

    def describe(self) -> str:
        return f"openvino {self._ov.__version__} (CPU, {self.config.precision.value})"

    def _load(self, paths: dict[str, Path]) -> Loaded:
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

    def _execute(self, graph: str, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        request = self._graphs[graph]
        request.infer(feed)
        # copies: the request's output buffers are overwritten by its next run
        return tuple(np.array(request.get_output_tensor(i).data) for i in range(len(request.model_outputs)))
