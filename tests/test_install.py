"""Installed as a user would: the wheel (not the editable checkout) in a fresh venv, run from another
directory: `stbn denoise`, `stbn run` and `stbn engines check` find the shipped weights and the
embedded config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.pipeline.conftest import write_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_denoises_from_another_directory(tmp_path: Path) -> None:
    # built from a copy: setuptools writes build/ and *.egg-info into the tree it builds
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "runs", "out", "cache", "data", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, source, ignore=skip)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, capture_output=True, timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("stbn_stream-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # the dependencies (torch, OpenCV, ...) come from this interpreter's site-packages, appended to
    # the new venv's path; the project itself only from the wheel
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.check_output([str(python), "-c", ask], text=True).strip())
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_video(elsewhere / "noisy.mp4", 8, width=64, height=48)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STBN_WEIGHTS")} | {"OMP_NUM_THREADS": "1"}
    stbn = str(venv / "bin" / "stbn")
    ask = "import stbn, stbn.weights as w; print(stbn.__file__); print(w.shipped_checkpoint())"
    where = subprocess.run([str(python), "-c", ask], cwd=elsewhere, env=env, capture_output=True, text=True)
    module, weights = where.stdout.split()
    assert module.startswith(str(venv)) and weights.startswith(str(venv)), where.stdout  # not the checkout
    done = subprocess.run([stbn, "denoise", "noisy.mp4", "clean.mp4", "--no-progress", "--threads", "1"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "denoised 8 frames 64x48" in done.stdout and (elsewhere / "clean.mp4").is_file()
    run = subprocess.run([stbn, "run", "--quiet", "--set", "sources[0].frames=6", "--set", "publish.enabled=false",
                          "--set", "report.plot=false"], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "stbn run: 6 frames" in run.stderr and (elsewhere / "out" / "latency.json").is_file()
    check = subprocess.run([stbn, "engines", "check", "--backend", "onnxruntime", "--height", "32", "--width", "48",
                            "--frames", "3", "--cache-dir", str(tmp_path / "engines")], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert check.returncode == 0 and check.stdout.rstrip().endswith("OK"), check.stdout + check.stderr
