"""``backend: auto`` on a CPU: the backend ``stbn engines pick`` measured fastest here."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import stbn
from engines import Backend, EngineConfig, Precision, create_engine
from engines.selection import PICKS_FILE, cpu_backend, installed, machine_key, measure_cpu_backends

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="auto takes the GPU path where CUDA is present")


def test_without_a_measurement_auto_takes_the_default_and_says_so(tmp_path: Path, caplog) -> None:
    config = EngineConfig(backend="auto", cache_dir=str(tmp_path))
    pick = cpu_backend(config)
    assert pick.backend == "onnxruntime" and pick.measured is None
    if installed(Backend.OPENVINO):
        assert cpu_backend(config.replace(precision="bf16")).backend == "openvino"
    with caplog.at_level(logging.INFO, logger="engines"):
        engine = create_engine(config, model=stbn.build_model("cpu-rt"))
    engine.close()
    assert engine.name == "onnxruntime" and "not measured on this machine" in caplog.text


def test_pick_measures_every_installed_cpu_backend_and_auto_follows_it(tmp_path: Path, caplog) -> None:
    checkpoint = tmp_path / "cpu-rt.pt"
    stbn.save_checkpoint(checkpoint, stbn.build_model("cpu-rt"), preset="cpu-rt")
    config = EngineConfig(backend="auto", checkpoint=str(checkpoint), cache_dir=str(tmp_path), threads=1)
    entry = measure_cpu_backends(config, (16, 32), lookahead=0, frames=2)
    expected = {b.value for b in (Backend.ONNXRUNTIME, Backend.OPENVINO, Backend.TORCH) if installed(b)}
    assert set(entry["frames_per_s"]) == expected and all(v > 0 for v in entry["frames_per_s"].values())
    assert entry["backend"] == max(entry["frames_per_s"], key=entry["frames_per_s"].get)
    saved = json.loads((tmp_path / PICKS_FILE).read_text())
    assert saved[machine_key(Precision.FP32)] == entry
    # another answer recorded for this machine is what auto runs, and its log line says why
    slowest = min(entry["frames_per_s"], key=entry["frames_per_s"].get)
    saved[machine_key(Precision.FP32)] = entry | {"backend": slowest}
    (tmp_path / PICKS_FILE).write_text(json.dumps(saved))
    with caplog.at_level(logging.INFO, logger="engines"):
        engine = create_engine(config)
    engine.close()
    assert engine.name == slowest and "engines pick" in caplog.text and "frames/s" in caplog.text


def test_every_backend_a_config_may_name_has_an_engine_class() -> None:
    from engines.factory import BACKEND_CLASSES

    assert set(Backend) - {Backend.AUTO} == set(BACKEND_CLASSES)
