"""Which CPU backend ``backend: auto`` runs: the one ``stbn engines pick`` measured fastest on
this machine, for the configured precision.

The ranking changes with the CPU (AMX, AVX-512, core count) and the library versions, so it is
measured, not assumed: ``pick`` streams the same frames through every installed CPU backend that
runs the precision and writes the frames/s of each to ``<engine cache>/cpu-backends.json``, keyed
by the CPU, its core count and the libraries' versions. ``auto`` reads the entry that matches this
machine; where there is none it takes ONNX Runtime for fp32 and OpenVINO for bf16 (the faster ones
on the CPUs measured so far, docs/BENCHMARKS.md) and its log line says that nothing was measured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Backend, BackendUnavailable, EngineConfig, Precision, default_cache_dir
from stbn.model import STBN

# CPU backends per precision, in the order taken when nothing was measured
CPU_BACKENDS: dict[Precision, tuple[Backend, ...]] = {
    Precision.FP32: (Backend.ONNXRUNTIME, Backend.OPENVINO, Backend.TORCH),
    Precision.BF16: (Backend.OPENVINO, Backend.TORCH),
}
_PACKAGES = {Backend.ONNXRUNTIME: "onnxruntime", Backend.OPENVINO: "openvino", Backend.TORCH: "torch"}
PICKS_FILE = "cpu-backends.json"


@dataclass(frozen=True)
class BackendPick:
    backend: Backend
    measured: dict[str, float] | None  # backend name -> frames/s where measured; None: the default

    def reason(self, precision: Precision) -> str:
        if self.measured is None:
            return (f"no GPU; the default CPU backend for {precision.value}, not measured on this machine "
                    "(`stbn engines pick` times each CPU backend here; auto then takes the fastest)")  # fmt: skip
        ranked = sorted(self.measured.items(), key=lambda kv: -kv[1])
        rates = ", ".join(f"{name} {fps:.1f}" for name, fps in ranked)
        pick = f"`stbn engines pick`: {rates} frames/s"
        return f"no GPU; the fastest CPU backend for {precision.value} here ({pick})"


def installed(backend: Backend) -> bool:
    return importlib.util.find_spec(_PACKAGES[backend]) is not None


def machine_key(precision: Precision) -> str:
    """What the ranking depends on: the CPU, its cores, the backends' library versions, the precision."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    versions = ",".join(
        f"{b.value}={metadata.version(_PACKAGES[b])}" for b in CPU_BACKENDS[precision] if installed(b)
    )
    return f"{cpu}|{os.cpu_count()} cores|{versions}|{precision.value}"


def _picks_path(config: EngineConfig) -> Path:
    base = Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()
    return base.resolve() / PICKS_FILE


def cpu_backend(config: EngineConfig) -> BackendPick:
    """The CPU backend ``auto`` runs for ``config.precision``."""
    if config.precision not in CPU_BACKENDS:
        raise BackendUnavailable(f"no CPU backend runs {config.precision.value}; choose fp32 or bf16")
    path = _picks_path(config)
    if path.is_file():
        try:
            entry = json.loads(path.read_text()).get(machine_key(config.precision))
        except (OSError, ValueError):
            entry = None
        recorded = {b.value: b for b in CPU_BACKENDS[config.precision]}.get((entry or {}).get("backend"))
        if recorded is not None and installed(recorded):
            return BackendPick(recorded, entry["frames_per_s"])
    return BackendPick(next(b for b in CPU_BACKENDS[config.precision] if installed(b)), None)


def time_engine(config: EngineConfig, model: STBN | None, hw: tuple[int, int], lookahead: int, frames: int) -> float:
    """Median ms per pushed frame once the look-ahead window is full (upload and download included)."""
    import torch

    from engines.factory import create_engine
    from stbn.noise_estimation import NoiseConfig, NoiseMode
    from stbn.streaming import StreamingDenoiser

    rng = np.random.default_rng(0)
    height, width = hw
    base = rng.integers(0, 256, (height, width + 2 * (lookahead + 1 + frames), 3), dtype=np.uint8)
    clip = [np.ascontiguousarray(base[:, 2 * t : 2 * t + width]) for t in range(lookahead + 1 + frames)]
    with create_engine(config, model=model) as engine:
        engine.build(*hw)
        engine.warmup(1)
        denoiser = StreamingDenoiser(engine, lookahead, NoiseConfig(NoiseMode.FIXED, 25.0))
        times = []
        for i, frame in enumerate(clip):
            start = time.perf_counter()
            denoiser.push(frame, i)
            if config.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i > lookahead:
                times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)


def measure_cpu_backends(
    config: EngineConfig, hw: tuple[int, int] = (360, 640), lookahead: int = 0, frames: int = 12
) -> dict[str, Any]:
    """Time every installed CPU backend for ``config.precision`` (the configured checkpoint,
    threads and cache), record the fastest for this machine, and return the entry written."""
    rates = {}
    for backend in CPU_BACKENDS[config.precision]:
        if not installed(backend):
            continue
        try:
            ms = time_engine(config.replace(backend=backend, device="cpu"), None, hw, lookahead, frames)
        except BackendUnavailable:
            continue
        rates[backend.value] = round(1e3 / ms, 2)
    if not rates:
        raise BackendUnavailable(f"no CPU backend for {config.precision.value} is installed")
    entry = {
        "backend": max(rates, key=rates.get),
        "frames_per_s": rates,
        "measured_at": f"{hw[1]}x{hw[0]}, L={lookahead}, {config.threads or 'default'} threads",
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    path = _picks_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    picks = json.loads(path.read_text()) if path.is_file() else {}
    picks[machine_key(config.precision)] = entry
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(picks, indent=1))
    partial.replace(path)
    return entry
