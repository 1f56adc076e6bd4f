"""Runtime backends behind one interface (PyTorch, ONNX Runtime, TensorRT) and streaming."""

from __future__ import annotations

from engines.base import BACKENDS, BackendUnavailable, Engine, EngineConfig, EngineError
from engines.factory import create_camera_engine, create_engine

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "Engine",
    "EngineConfig",
    "EngineError",
    "create_camera_engine",
    "create_engine",
]
