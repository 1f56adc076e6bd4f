"""The one interface every runtime backend implements (Polygraphy-runner style)."""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stbn.checkpoint import load_checkpoint
from stbn.model import STBN

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")


class EngineError(RuntimeError):
    """A backend that cannot be built or run as configured (missing package, no device, ...)."""


class BackendUnavailable(EngineError):
    """The backend's package or device is not present on this machine."""


@dataclass(frozen=True)
class EngineConfig:
    """What to run and how. ``checkpoint`` is one of our STBN checkpoints (weights + config)."""

    backend: str = "auto"
    checkpoint: str = "weights/stbn-cpu-rt.pt"
    preset: str | None = None  # when set, the checkpoint must hold this preset
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile (PyTorch backend)
    threads: int = 0  # intra-op threads on the CPU; 0 = library default
    cache_dir: str = "cache/engines"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"engine.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"engine.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.threads < 0:
            raise ValueError("engine.threads must be >= 0")

    def replace(self, **changes: Any) -> EngineConfig:
        return dataclasses.replace(self, **changes)


class Engine(abc.ABC):
    """Runs the named step graphs of :mod:`stbn.step` for one resolution.

    Arrays passed between calls are backend-native handles (torch tensors, numpy arrays, device
    buffers); callers pass them back unchanged and only convert frames with ``upload`` and
    ``download``. Usable as a context manager; ``close`` releases device memory.
    """

    name: str = "engine"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        """``model`` overrides the configured checkpoint (tests, benchmarks)."""
        self.config = config
        self.model = (
            model if model is not None else load_checkpoint(config.checkpoint, preset=config.preset).model
        ).eval()
        self.resolution: tuple[int, int] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, height: int, width: int) -> None:
        """Compile, export or load the graphs for frames of ``height`` x ``width``."""

    @property
    @abc.abstractmethod
    def graphs(self) -> tuple[str, ...]:
        """Names of the graphs this engine runs (``backward*`` only for bidirectional models)."""

    @property
    def bidirectional(self) -> bool:
        return self.model.config.bidirectional

    @abc.abstractmethod
    def run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        """Run one graph; always returns a tuple of backend-native arrays."""

    @abc.abstractmethod
    def upload(self, array: np.ndarray) -> Any:
        """Host array (a uint8 frame, a small float vector) -> backend-native array."""

    @abc.abstractmethod
    def download(self, handle: Any) -> np.ndarray:
        """Backend-native array -> host numpy array."""

    def describe(self) -> str:
        """One line: backend, device, precision."""
        return f"{self.name} ({self.config.precision})"

    def warmup(self, iterations: int = 2) -> None:
        """Run every graph on dummy inputs so that the first real frame pays no set-up cost."""
        if self.resolution is None:
            raise EngineError("build() the engine before warmup()")
        h, w = self.resolution
        frame = self.upload(np.zeros((h, w, 3), np.uint8))
        noise = self.upload(np.array([[0.0, (25 / 255) ** 2]], np.float32))
        for _ in range(iterations):
            (x,) = self.run("prepare", frame)
            fwd, bwd = self.run("pair_flows", x, x)
            (fwd,) = self.run("flow_to_prev", x, x)
            (h_f,) = self.run("forward_start", x, noise)
            (h_f,) = self.run("forward", x, noise, h_f, fwd)
            hidden = [h_f]
            if self.bidirectional:
                (h_b,) = self.run("backward_start", x, noise)
                (h_b,) = self.run("backward", x, noise, h_b, bwd)
                hidden.append(h_b)
            self.download(self.run("fuse", x, noise, *hidden)[0])

    # -- weight swaps (online adaptation) ---------------------------------------------------------
    def prepare_weights(self, state_dict: dict[str, Any]) -> Any:
        """Get new weights ready to run; may be slow (an export, a build) and runs off the hot path.

        Checks that ``state_dict`` fits this engine's model (same keys and shapes), then returns a
        token for :meth:`swap_weights`.
        """
        own = self.model.state_dict()
        if set(state_dict) != set(own):
            raise EngineError(f"weights do not fit the model: {sorted(set(state_dict) ^ set(own))[:4]}")
        wrong = [k for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
        if wrong:
            raise EngineError(f"weights do not fit the model: shapes differ for {wrong[:4]}")
        if self.resolution is None:
            raise EngineError("build() the engine before preparing weights")
        return self._prepare_weights(state_dict)

    def _prepare_weights(self, state_dict: dict[str, Any]) -> Any:
        raise EngineError(f"the {self.name} backend cannot swap weights while running")

    def swap_weights(self, prepared: Any) -> None:
        """Run the prepared weights from the next graph call on; fast, called between frames."""
        raise EngineError(f"the {self.name} backend cannot swap weights while running")

    def close(self) -> None:
        """Release resources (idempotent)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cache_path(config: EngineConfig, key: str, suffix: str) -> Path:
    path = Path(config.cache_dir) / f"{key}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
