"""PyTorch backend: eager (or torch.compile) on the CPU or CUDA, fp32 / fp16 / bf16 autocast."""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
from typing import Any

import numpy as np
import torch

from engines.base import (
    BackendUnavailable,
    Engine,
    EngineConfig,
    Precision,
    cache_path,
    download_tensor,
    resolve_device,
    upload_tensor,
)
from stbn.model import STBN
from stbn.step import step_graphs

_DTYPES = {Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}
log = logging.getLogger("engines")


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, config: EngineConfig, model: STBN | None = None) -> None:
        self.device = resolve_device(config.device)
        if config.precision is Precision.FP16 and self.device.type == "cpu":
            raise BackendUnavailable("fp16 autocast needs CUDA; use bf16 or fp32 on the CPU")
        if config.threads and self.device.type == "cpu":
            torch.set_num_threads(config.threads)
        if config.compile:  # Inductor's compiled kernels live with the other engines' artefacts
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_path(config, "inductor", "")))
        super().__init__(config, model)
        self.model = self.model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._graphs = self._graphs_for(self.model)

    def describe(self) -> str:
        extra = " channels_last" if self.config.channels_last else ""
        extra += " compiled" if self.config.compile else ""
        return f"torch on {self.device} ({self.config.precision.value}{extra})"

    def build(self, height: int, width: int) -> None:
        self.resolution = (height, width)
        if self.config.compile:
            # compile every graph now (static shapes per resolution), not on the stream's first frames
            start = time.perf_counter()
            log.info(
                "torch.compile for %dx%d: up to a minute or two the first time (Inductor's cache: %s); "
                "engine.compile: false skips it", width, height, os.environ["TORCHINDUCTOR_CACHE_DIR"],
            )  # fmt: skip
            self.warmup(1)
            log.info("torch.compile for %dx%d done in %.1f s", width, height, time.perf_counter() - start)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision is Precision.FP32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.config.precision])

    def _run(self, graph: str, *inputs: Any) -> tuple[Any, ...]:
        with torch.inference_mode(), self._autocast():
            if self.config.channels_last and graph != "prepare":
                inputs = tuple(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in inputs)
            out = self._graphs[graph](*inputs)
        out = out if isinstance(out, tuple) else (out,)
        return tuple(o.float() if o.is_floating_point() else o for o in out)

    def _prepare_weights(self, state_dict: dict[str, Any]) -> tuple[STBN, dict[str, Any]]:
        # a new model, not the running one changed in place: the caller's model (maybe shared by
        # other streams' engines) stays as it was
        model = copy.deepcopy(self.model)
        model.load_state_dict(state_dict)
        return model, self._graphs_for(model)

    def swap_weights(self, prepared: tuple[STBN, dict[str, Any]]) -> None:
        self.model, self._graphs = prepared

    def _graphs_for(self, model: STBN) -> dict[str, Any]:
        graphs: dict[str, Any] = dict(step_graphs(model))
        if self.config.compile:
            graphs = {k: torch.compile(g, dynamic=False) for k, g in graphs.items()}
        return graphs

    def upload(self, array: np.ndarray) -> torch.Tensor:
        return upload_tensor(array, self.device)

    def download(self, handle: torch.Tensor) -> np.ndarray:
        return download_tensor(handle)

    def close(self) -> None:
        self._graphs.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
