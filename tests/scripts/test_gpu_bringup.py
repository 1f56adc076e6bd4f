"""The GPU bring-up script's dry run (CPU, tiny sizes, seconds of training) runs the whole sequence,
so the script a GPU session runs in one go cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import stbn

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bringup_dry_run_writes_weights_figures_card_and_log(tmp_path: Path) -> None:
    out = tmp_path / "bringup"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        ["bash", "scripts/gpu_bringup.sh", "--dry-run", "--minutes", "0.25", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in (
        "stbn-gpu-rt.pt",
        "stbn-gpu-rt.md",
        "results.json",
        "bringup.log",
        "train/state.pt",
        "train/log.jsonl",
    ):
        assert (out / name).is_file(), name

    results = json.loads((out / "results.json").read_text())
    steps = {s["name"]: s for s in results["steps"]}
    assert list(steps) == ["install", "train", "evaluate", "engine_check", "benchmark"]
    assert steps["install"]["status"] == "skipped" and "dry run" in steps["install"]["reason"]
    assert all(steps[name]["status"] == "ok" for name in ("train", "evaluate", "engine_check", "benchmark")), steps

    assert results["train"]["iterations"] > 0 and results["train"]["flow_pretrain_iterations"] > 0
    assert stbn.load_checkpoint(out / "stbn-gpu-rt.pt", preset="gpu-rt").model.config.ring_mean
    means = results["evaluation"]["mean"]
    assert {"noisy", "gpu-rt", "gpu-rt prior mean", "cpu-rt (shipped)"} <= set(means)
    assert all(math.isfinite(v) for row in means.values() for v in row.values())
    assert means["cpu-rt (shipped)"]["30"] > means["noisy"]["30"] + 3.0  # the comparison model really ran
    check = results["engine_check"]
    assert check["tensorrt"].startswith("skipped") and "CUDA" in check["tensorrt"]
    assert check["onnxruntime_vs_torch_fp32_96x64"]["max_abs_diff"] <= 2
    cells = results["benchmark"]["cells"]
    assert {c["preset"] for c in cells} == {"gpu-rt", "base"} and all(c["p50_ms"] > 0 for c in cells)

    card = (out / "stbn-gpu-rt.md").read_text()
    assert "| gpu-rt |" in card and "## Speed" in card
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
