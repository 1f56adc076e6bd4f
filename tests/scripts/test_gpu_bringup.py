"""The GPU scripts' dry runs (CPU, tiny sizes, seconds of training) run their whole sequences, so
the scripts a GPU session runs in one go cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import stbn

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bringup_dry_run_runs_every_step_through_the_projects_commands(tmp_path: Path) -> None:
    out = tmp_path / "bringup"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        ["bash", "scripts/gpu_bringup.sh", "--dry-run", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("results.json", "bringup.log", "window/stbn-gpu-rt.pt", "window/window.json", "window/run/state.pt"):
        assert (out / name).is_file(), name

    results = json.loads((out / "results.json").read_text())
    steps = {s["name"]: s for s in results["steps"]}
    assert list(steps) == ["install", "window", "engine_check", "benchmark"]
    assert steps["install"]["status"] == "skipped" and "dry run" in steps["install"]["reason"]
    assert all(steps[name]["status"] == "ok" for name in ("window", "engine_check", "benchmark")), steps
    # each step is one of the project's own commands, not a second copy of it
    assert "scripts/gpu_window.py train" in steps["window"]["command"][0]
    assert "-m engines check" in steps["engine_check"]["command"][0]
    assert "bench/engine_speed.py" in steps["benchmark"]["command"][0]

    assert stbn.load_checkpoint(out / "window/stbn-gpu-rt.pt", preset="gpu-rt").model.config.ring_mean
    scores = results["window"]["scores"]
    assert all(math.isfinite(v) for v in scores.values())
    assert scores["cpu-rt (shipped)"] > 25.0  # the comparison model really ran
    check = (out / "engine_check.log").read_text()
    assert "onnxruntime" in check and "\nOK" in check  # the engine agreed with the PyTorch fp32 reference
    bench = (out / "benchmark.log").read_text()
    assert "| torch | fp32 | gpu-rt | 96x64 | 2 |" in bench and "| torch | fp32 | base | 96x64 | 2 |" in bench
    assert "step benchmark: ok" in (out / "bringup.log").read_text()


def test_gpu_bringup_without_cuda_refuses_the_real_run(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        return  # the refusal is for CPU-only machines
    done = subprocess.run(
        ["bash", "scripts/gpu_bringup.sh", "--minutes", "1", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "no CUDA device" in done.stdout + done.stderr


def test_gpu_windows_add_up_from_the_committed_state(tmp_path: Path) -> None:
    """scripts/gpu_window.py dry runs: the second window resumes where the landed first one stopped,
    each is scored against the shipped models, logged, and committed with --commit."""
    import shutil

    root = tmp_path / "checkout"
    (root / "weights").mkdir(parents=True)
    for name in ("stbn-cpu-rt.pt", "stbn-gpu-rt.pt"):  # copies: landing may replace the gpu-rt weights
        shutil.copyfile(ROOT / "weights" / name, root / "weights" / name)
    identity = {f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER") for what, value in
                (("NAME", "test"), ("EMAIL", "test@example.org"))}  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", **identity)

    def window(n: int) -> dict:
        out = tmp_path / f"window{n}"
        for step in (["train", str(out), "--minutes", "0.05", "--dry-run"], ["land", str(out), "--commit"]):
            done = subprocess.run([sys.executable, "scripts/gpu_window.py", *step, "--root", str(root)], cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return json.loads((out / "window.json").read_text())

    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "base"], cwd=root, env=env, check=True)
    first = window(1)
    assert first["iterations"][0] == 0 and first["iterations"][1] > 0
    assert (root / "weights/training/gpu-rt-state.pt").is_file()
    second = window(2)
    assert second["iterations"][0] == first["iterations"][1] < second["iterations"][1]
    assert second["train_minutes"][0] == first["train_minutes"][1]
    assert set(second["scores"]) == {"gpu-rt (this window)", "gpu-rt (shipped)", "cpu-rt (shipped)"}
    assert second["scores"]["cpu-rt (shipped)"] > 25.0  # the comparison really ran the shipped model
    rows = [r for r in (root / "docs/gpu/windows.md").read_text().splitlines() if "(dry run)" in r]
    assert len(rows) == 2
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True).stdout
    assert log.count("GPU window: gpu-rt iterations") == 2
