"""ONNX Runtime backend: the exported step graphs on the CPU provider (default), or the CUDA /
TensorRT execution providers when present and a GPU device is asked for."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engines.base import BackendUnavailable, EngineConfig, Precision
from engines.onnx_graphs import Loaded, OnnxGraphEngine
from stbn.model import STBN


class OnnxRuntimeEngine(OnnxGraphEngine):
    name = "onnxruntime"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("the onnxruntime backend needs the 'onnxruntime' package") from exc
        if config.precision is not Precision.FP32:
            raise BackendUnavailable("the onnxruntime backend runs fp32 graphs; use precision fp32")
        super().__init__(config, model)
        self._ort = ort
        self.providers = self._providers()

    def _providers(self) -> list[str]:
        available = self._ort.get_available_providers()
        if self.config.device in ("auto", "cuda") or self.config.device.startswith("cuda"):
            gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
            if gpu:
                return [*gpu, "CPUExecutionProvider"]
            if self.config.device != "auto":
                raise BackendUnavailable(
                    f"device {self.config.device!r} asked for, but ONNX Runtime has no GPU provider"
                )
        return ["CPUExecutionProvider"]

    def describe(self) -> str:
        return f"onnxruntime {self._ort.__version__} ({self.providers[0]}, fp32)"

    def _load(self, paths: dict[str, Path]) -> Loaded:
        options = self._ort.SessionOptions()
        options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.config.threads:
            options.intra_op_num_threads = self.config.threads
        if (os.cpu_count() or 1) <= 4:
            # Spinning threads steal the few cores from capture and publishing.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {
            name: self._ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
            for name, path in paths.items()
        }
        return sessions, {name: [i.name for i in s.get_inputs()] for name, s in sessions.items()}

    def _execute(self, graph: str, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        return tuple(self._graphs[graph].run(None, feed))
