"""ONNX Runtime backend: the exported step graphs on the CPU provider (default), or the CUDA /
TensorRT execution providers when present and a GPU device is asked for."""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import BackendUnavailable, Engine, EngineConfig, cache_path
from engines.onnx_export import engine_key, export_step_graphs
from stbn.model import STBN
from stbn.step import GRAPHS


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("the onnxruntime backend needs the 'onnxruntime' package") from exc
        if config.precision != "fp32":
            raise BackendUnavailable("the onnxruntime backend runs fp32 graphs; use precision fp32")
        super().__init__(config, model)
        self._ort = ort
        self.providers = self._providers()
        self._sessions: dict[str, Any] = {}
        self._input_names: dict[str, list[str]] = {}

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

    def build(self, height: int, width: int) -> None:
        self._sessions, self._input_names = self._sessions_for(self.model, height, width)
        self.resolution = (height, width)

    def _prepare_weights(self, state_dict: dict[str, Any]) -> tuple[STBN, dict[str, Any], dict[str, list[str]]]:
        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(state_dict)
        # adapted weights are one-offs: their graphs are exported to a temporary folder, loaded, and
        # deleted (the sessions hold them), not left in the cache (1.5 MB at every swap)
        with tempfile.TemporaryDirectory(prefix="stbn-swap-") as tmp:
            return (model, *self._sessions_for(model.eval(), *self.resolution, Path(tmp)))

    def swap_weights(self, prepared: tuple[STBN, dict[str, Any], dict[str, list[str]]]) -> None:
        self.model, self._sessions, self._input_names = prepared

    def _sessions_for(
        self, model: STBN, height: int, width: int, directory: Path | None = None
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        """Export (or find in the cache, unless ``directory`` is given) and load the step graphs."""
        if directory is None:
            key = engine_key(model, height, width, {"format": "onnx", "ort": self._ort.__version__})
            directory = cache_path(self.config, f"onnx-{key}", "")
        paths = export_step_graphs(model, height, width, directory)
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

    def _run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        names = GRAPHS[graph].inputs
        # The exporter drops inputs a graph does not read (e.g. frames under zero flow).
        used = self._input_names[graph]
        feed = {name: value for name, value in zip(names, inputs) if name in used}
        return tuple(self._sessions[graph].run(None, feed))

    def upload(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array)

    def download(self, handle: np.ndarray) -> np.ndarray:
        return np.asarray(handle)

    def close(self) -> None:
        self._sessions.clear()
