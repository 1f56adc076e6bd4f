"""TensorRT backend: the step graphs compiled by torch-tensorrt's dynamo path (torch.export front
end), fp16 by default, serialized to disk and reloaded on the next start.

Cache key: weights hash, model config, resolution, precision, TensorRT and torch-tensorrt
versions and the GPU name. The look-ahead L is not part of it: the step graphs do not depend on
L (the streaming loop strings them together), so one engine serves every L.

TensorRT cannot be installed on the development machines (ENVIRONMENT.md): the imports are lazy
and a missing package is a BackendUnavailable naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.base import (
    BackendUnavailable,
    Engine,
    EngineConfig,
    EngineError,
    Precision,
    cache_path,
    download_tensor,
    upload_tensor,
)
from engines.onnx_export import engine_key
from stbn.model import STBN
from stbn.step import example_inputs, step_graphs

_DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}


def _import_tensorrt() -> tuple[Any, Any]:
    try:
        import tensorrt
        import torch_tensorrt
    except Exception as exc:  # ImportError, or OSError for a missing libnvinfer
        raise BackendUnavailable(
            "the tensorrt backend needs the 'torch-tensorrt' and 'tensorrt' packages with their CUDA "
            f"libraries (pip install '.[tensorrt]' on a CUDA machine): {exc.__class__.__name__}: {exc}"
        ) from exc
    return tensorrt, torch_tensorrt


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailable("the tensorrt backend needs a CUDA device; none is visible to PyTorch")
        self._trt, self._torch_trt = _import_tensorrt()
        super().__init__(config, model)
        self.device = torch.device("cuda" if config.device in ("auto", "cpu") else config.device)
        self.model = self.model.to(self.device)
        self._modules: dict[str, Any] = {}

    def describe(self) -> str:
        gpu = torch.cuda.get_device_name(self.device)
        return f"tensorrt {self._trt.__version__} on {gpu} ({self.config.precision.value})"

    def engine_directory(self, height: int, width: int) -> Path:
        extra = {
            "format": "torch-tensorrt",
            "precision": self.config.precision.value,
            "tensorrt": self._trt.__version__,
            "torch_tensorrt": self._torch_trt.__version__,
            "gpu": torch.cuda.get_device_name(self.device),
        }
        return cache_path(self.config, f"trt-{engine_key(self.model, height, width, extra)}", "")

    def build(self, height: int, width: int) -> None:
        directory = self.engine_directory(height, width)
        directory.mkdir(parents=True, exist_ok=True)
        inputs = example_inputs(self.model, height, width)
        for name, graph in step_graphs(self.model).items():
            path = directory / f"{name}.ep"
            args = tuple(x.to(self.device) for x in inputs[name])
            if not path.exists():
                with torch.no_grad():
                    exported = torch.export.export(graph, args)
                    compiled = self._torch_trt.dynamo.compile(
                        exported,
                        arg_inputs=list(args),
                        enabled_precisions={_DTYPES[self.config.precision]},
                    )
                tmp = path.with_suffix(".ep.tmp")
                self._torch_trt.save(compiled, str(tmp), arg_inputs=list(args))
                tmp.replace(path)
            self._modules[name] = torch.export.load(str(path)).module()
        self.resolution = (height, width)

    def _run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        with torch.inference_mode():
            out = self._modules[graph](*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _prepare_weights(self, state_dict: dict[str, Any]) -> Any:
        # The weights are compiled into the engines as constants. A swap would rebuild them with
        # refittable weights (trt.Refitter); not implemented until TensorRT has run here.
        raise EngineError("the tensorrt backend cannot swap weights yet (needs a refittable engine)")

    def upload(self, array: np.ndarray) -> torch.Tensor:
        return upload_tensor(array, self.device)

    def download(self, handle: torch.Tensor) -> np.ndarray:
        return download_tensor(handle)

    def close(self) -> None:
        self._modules.clear()
        torch.cuda.empty_cache()

