"""Backend selection: ``backend: auto`` picks TensorRT if usable, else PyTorch on CUDA, else the
CPU backend measured fastest on this machine (:mod:`engines.selection`), and logs one line saying
which and why."""

from __future__ import annotations

import importlib
import logging

import torch

from engines.base import Backend, Engine, EngineConfig
from engines.selection import cpu_backend
from stbn.model import STBN
from stbn.weights import NO_CAMERA_MODEL, resolve_camera_checkpoint

log = logging.getLogger("engines")

# backend -> (module, Engine subclass): one file per backend
BACKEND_CLASSES: dict[Backend, tuple[str, str]] = {
    Backend.TORCH: ("engines.torch_engine", "TorchEngine"),
    Backend.ONNXRUNTIME: ("engines.onnxruntime_engine", "OnnxRuntimeEngine"),
    Backend.OPENVINO: ("engines.openvino_engine", "OpenVinoEngine"),
    Backend.TENSORRT: ("engines.tensorrt_engine", "TensorRTEngine"),
}


def _tensorrt_usable() -> str | None:
    """None if TensorRT can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # ImportError or a missing shared library (OSError)
        return f"torch_tensorrt not importable ({exc.__class__.__name__}: {exc})"
    return None


def create_camera_engine(config: EngineConfig, main: Engine) -> Engine | None:
    """The engine of the camera model that goes with ``main`` (``config.camera_checkpoint``), on
    the same backend; None where there is none (a main model given as a module has no shipped one)."""
    preset = main.checkpoint.preset if main.checkpoint is not None else None
    if preset is None and config.camera_checkpoint in ("", "shipped"):
        return None
    path = resolve_camera_checkpoint(config.camera_checkpoint, preset)
    if path is None:
        return None
    camera = config.replace(checkpoint=str(path), preset=None, camera_checkpoint=NO_CAMERA_MODEL)
    return create_engine(camera)


def create_engine(config: EngineConfig, model: STBN | None = None) -> Engine:
    """Instantiate the configured backend (``model`` overrides the checkpoint, for tests/bench)."""
    backend = config.backend
    if backend is Backend.AUTO:
        reason = _tensorrt_usable()
        if reason is None:
            backend, why = Backend.TENSORRT, "CUDA device and torch_tensorrt present"
        elif torch.cuda.is_available():
            backend, why = Backend.TORCH, f"CUDA present but TensorRT unusable: {reason}"
        else:
            pick = cpu_backend(config)
            backend, why = pick.backend, pick.reason(config.precision)
        log.info("engine backend auto -> %s: %s", backend.value, why)
        config = config.replace(backend=backend)
    module, name = BACKEND_CLASSES[backend]
    # each backend's file imports its optional library: only the one asked for is loaded
    engine_class = getattr(importlib.import_module(module), name)
    return engine_class(config, model)
