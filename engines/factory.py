"""Backend selection: ``backend: auto`` picks TensorRT if usable, else PyTorch on CUDA, else the
CPU backend measured fastest on this machine (:mod:`engines.selection`), and logs one line saying
which and why."""

from __future__ import annotations

import logging

import torch

from engines.base import BackendUnavailable, Engine, EngineConfig
from engines.selection import cpu_backend
from stbn.model import STBN

log = logging.getLogger("engines")


def _tensorrt_usable() -> str | None:
    """None if TensorRT can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # ImportError or a missing shared library (OSError)
        return f"torch_tensorrt not importable ({exc.__class__.__name__}: {exc})"
    return None


def create_engine(config: EngineConfig, model: STBN | None = None) -> Engine:
    """Instantiate the configured backend (``model`` overrides the checkpoint, for tests/bench)."""
    backend = config.backend
    if backend == "auto":
        reason = _tensorrt_usable()
        if reason is None:
            backend, why = "tensorrt", "CUDA device and torch_tensorrt present"
        elif torch.cuda.is_available():
            backend, why = "torch", f"CUDA present but TensorRT unusable: {reason}"
        else:
            pick = cpu_backend(config)
            backend, why = pick.backend, pick.reason(config.precision)
        log.info("engine backend auto -> %s: %s", backend, why)
        config = config.replace(backend=backend)
    if backend == "torch":
        from engines.torch_engine import TorchEngine

        return TorchEngine(config, model)
    if backend == "onnxruntime":
        from engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(config, model)
    if backend == "openvino":
        from engines.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(config, model)
    if backend == "tensorrt":
        from engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(config, model)
    raise BackendUnavailable(f"unknown backend {backend!r}")
