"""Runtime backends behind one interface (PyTorch, ONNX Runtime, OpenVINO, TensorRT) and streaming."""

from __future__ import annotations

from engines.base import Backend, BackendUnavailable, Engine, EngineConfig, EngineError, Precision
from engines.factory import create_camera_engine, create_engine

__all__ = [
    "Backend",
    "BackendUnavailable",
    "Engine",
    "EngineConfig",
    "EngineError",
    "Precision",
    "create_camera_engine",
    "create_engine",
]
