"""What the backends that run the exported ONNX step graphs (ONNX Runtime, OpenVINO) share: the
export and its cache, the feed (the exporter drops inputs a graph does not read), weight swaps
through a temporary export, and host arrays as the native handles."""

from __future__ import annotations

import abc
import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, EngineConfig, cache_path
from engines.onnx_export import engine_key, export_step_graphs
from stbn.model import STBN
from stbn.step import GRAPHS

Loaded = tuple[dict[str, Any], dict[str, list[str]]]  # graph -> runnable, graph -> the inputs it reads


class OnnxGraphEngine(Engine):
    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        super().__init__(config, model)
        self._graphs: dict[str, Any] = {}
        self._input_names: dict[str, list[str]] = {}

    @abc.abstractmethod
    def _load(self, paths: dict[str, Path]) -> Loaded:
        """Load (compile) the exported graphs ``paths`` (graph name -> ONNX file)."""

    @abc.abstractmethod
    def _execute(self, graph: str, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Run one loaded graph on ``feed``; outputs in the graph's order, owned by the caller."""

    def build(self, height: int, width: int) -> None:
        self._graphs, self._input_names = self._graphs_for(self.model, height, width)
        self.resolution = (height, width)

    def _graphs_for(self, model: STBN, height: int, width: int, directory: Path | None = None) -> Loaded:
        """Export (or find in the cache, unless ``directory`` is given) and load the step graphs."""
        if directory is None:
            import onnxruntime  # its version keys the cache, shared by every ONNX backend

            key = engine_key(model, height, width, {"format": "onnx", "ort": onnxruntime.__version__})
            directory = cache_path(self.config, f"onnx-{key}", "")
        return self._load(export_step_graphs(model, height, width, directory))

    def _prepare_weights(self, state_dict: dict[str, Any]) -> tuple[STBN, dict[str, Any], dict[str, list[str]]]:
        model = copy.deepcopy(self.model).cpu()
        model.load_state_dict(state_dict)
        # adapted weights are one-offs: their graphs are exported to a temporary folder, loaded, and
        # deleted (the loaded graphs hold them), not left in the cache (1.5 MB at every swap)
        with tempfile.TemporaryDirectory(prefix="stbn-swap-") as tmp:
            return (model, *self._graphs_for(model.eval(), *self.resolution, Path(tmp)))

    def swap_weights(self, prepared: tuple[STBN, dict[str, Any], dict[str, list[str]]]) -> None:
        self.model, self._graphs, self._input_names = prepared

    def _run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        used = self._input_names[graph]
        feed = {name: value for name, value in zip(GRAPHS[graph].inputs, inputs) if name in used}
        return self._execute(graph, feed)

    def upload(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array)

    def download(self, handle: np.ndarray) -> np.ndarray:
        return np.asarray(handle)

    def close(self) -> None:
        self._graphs.clear()
