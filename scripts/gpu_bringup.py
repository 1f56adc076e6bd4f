"""GPU bring-up in one go, as a sequence of the project's own commands: train ``gpu-rt`` in a time
box and score it against the shipped models (``scripts/gpu_window.py train``: ``stbn train``,
``stbn eval``), check the GPU engines against the PyTorch fp32 reference (``stbn engines
check``, run as ``python -m engines check``), benchmark ``gpu-rt`` and ``base`` at 720p and 1080p
(``bench/engine_speed.py``).

    bash scripts/gpu_bringup.sh [--dry-run] [--minutes N] OUT_DIR

Each step runs in its own time box and is recorded (ok / failed / skipped, with the reason and
the end of its output); a failing step never stops the next one. ``--dry-run`` runs the same
sequence on the CPU with tiny sizes and seconds of training (the check on ONNX Runtime), so the
script is tested in CI.

OUT_DIR receives ``results.json`` (every step, the environment, the window's scores),
``window/`` (what ``gpu_window.py train`` writes: ``stbn-gpu-rt.pt``, ``window.json``, the
resumable ``run/``), one ``<step>.log`` per step and, from the shell wrapper, ``bringup.log``. Back
on the development machine ``python scripts/gpu_window.py land OUT_DIR/window --commit`` keeps the
state for the next window and ships the weights when they win (docs/gpu.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Settings:
    out: Path
    dry_run: bool
    train_minutes: float
    install: bool
    install_seconds: float
    check_seconds: float
    bench_seconds: float

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"


@dataclass
class StepRecord:
    name: str
    status: Status
    seconds: float
    budget_s: float
    command: list[str] = field(default_factory=list)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"status": self.status.value}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "cpus": os.cpu_count(),
        "host": platform.node(),
        "tensorrt": tensorrt_status(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                "cuda_version": torch.version.cuda}  # fmt: skip
    return env


def tensorrt_status() -> str:
    """'available <versions>' or why not."""
    importlib.invalidate_caches()
    try:
        import tensorrt
        import torch_tensorrt
    except Exception as exc:  # ImportError, or OSError for a missing libnvinfer
        return f"unavailable: {exc.__class__.__name__}: {exc}"
    return f"available: tensorrt {tensorrt.__version__}, torch-tensorrt {torch_tensorrt.__version__}"


# --- the steps: each a command line, or the reason it does not run here ---------------------------------


def install_command(settings: Settings) -> list[str] | str:
    """torch-tensorrt pinned to the installed torch, so that pip never replaces it."""
    if settings.dry_run:
        return "dry run: nothing is installed"
    if not settings.install:
        return "--no-install"
    if tensorrt_status().startswith("available"):
        return f"already {tensorrt_status()}"
    release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return [sys.executable, "-m", "pip", "install", "--retries", "0", "--timeout", "5", f"torch-tensorrt=={release}.*"]


def window_command(settings: Settings) -> list[str]:
    cmd = [sys.executable, str(ROOT / "scripts/gpu_window.py"), "train", str(settings.out / "window"),
           "--minutes", f"{settings.train_minutes:g}", "--root", str(ROOT)]  # fmt: skip
    return [*cmd, "--dry-run"] if settings.dry_run else cmd


def check_commands(settings: Settings) -> list[list[str]]:
    """The window's weights on each GPU engine (TensorRT where importable), else ONNX Runtime on a
    CPU for the dry run, against the PyTorch fp32 reference on the same frames."""
    weights = settings.out / "window" / "stbn-gpu-rt.pt"
    base = [sys.executable, "-m", "engines", "check", "--checkpoint", str(weights), "--device", settings.device]
    if settings.dry_run:
        return [[*base, "--backend", "onnxruntime", "--height", "64", "--width", "96", "--frames", "4"]]
    commands = [[*base, "--backend", "torch", "--precision", "fp16", "--height", "720", "--width", "1280",
                 "--min-psnr", "35"]]  # fmt: skip
    if tensorrt_status().startswith("available"):
        commands.append([*base, "--backend", "tensorrt", "--precision", "fp16", "--height", "720", "--width", "1280",
                         "--min-psnr", "35"])  # fmt: skip
    return commands


def bench_command(settings: Settings) -> list[str]:
    cmd = [sys.executable, str(ROOT / "bench/engine_speed.py"), "--presets", "gpu-rt", "base", "--skip-quality",
           "--device", settings.device]  # fmt: skip
    if settings.dry_run:
        return [*cmd, "--backends", "torch", "--resolutions", "96x64", "--lookaheads", "2", "--frames", "2"]
    backends = ["torch", "tensorrt"] if tensorrt_status().startswith("available") else ["torch"]
    return [*cmd, "--backends", *backends, "--precisions", "fp16", "--resolutions", "720p", "1080p",
            "--lookaheads", "0", "2", "--frames", "20"]  # fmt: skip


def run_step(settings: Settings, name: str, commands: list[list[str]] | str, budget: float) -> StepRecord:
    """Run ``commands`` one after another within ``budget`` seconds, their output to the terminal
    and to ``<name>.log``; a string instead of commands is the reason the step is skipped."""
    say(f"step {name} (budget {budget:.0f} s)")
    start = time.time()
    if isinstance(commands, str):
        record = StepRecord(name, Status.SKIPPED, 0.0, budget, reason=commands)
        say(f"step {name}: skipped: {commands}")
        return record
    status, reason, ran = Status.OK, "", []
    with open(settings.out / f"{name}.log", "w") as log:
        for cmd in commands:
            ran.append(" ".join(cmd))
            say(f"  $ {' '.join(cmd)}")
            left = budget - (time.time() - start)
            try:
                done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      timeout=max(left, 1.0), check=False)  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
                log.write(output)
                status, reason = Status.FAILED, f"did not finish within the step's {budget:.0f} s"
                break
            log.write(done.stdout)
            print(done.stdout, end="", flush=True)
            if done.returncode != 0:
                tail = " | ".join(done.stdout.strip().splitlines()[-2:])
                status, reason = Status.FAILED, f"exit {done.returncode}: {tail}"
    record = StepRecord(name, status, round(time.time() - start, 1), budget, ran, reason)
    say(f"step {name}: {status.value} in {record.seconds:.0f} s {reason}")
    return record


def bringup(settings: Settings) -> list[StepRecord]:
    settings.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"settings": {k: str(v) for k, v in dataclasses.asdict(settings).items()},
                               "environment": environment(), "steps": []}  # fmt: skip
    say(f"environment: {json.dumps(results['environment'])}")
    if not settings.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_bringup: PyTorch sees no CUDA device; use --dry-run on a CPU")
    install = install_command(settings)
    steps = [
        ("install", [install] if isinstance(install, list) else install, settings.install_seconds),
        # the training's own time box ends it; the budget adds the evaluation and data loading
        ("window", [window_command(settings)], settings.train_minutes * 60.0 + 600.0),
        ("engine_check", check_commands(settings), settings.check_seconds),
        ("benchmark", [bench_command(settings)], settings.bench_seconds),
    ]
    records = []
    try:
        for name, commands, budget in steps:
            if name == "engine_check" and not (settings.out / "window" / "stbn-gpu-rt.pt").is_file():
                commands = "the window wrote no weights"
            records.append(run_step(settings, name, commands, budget))
    finally:
        results["steps"] = [r.to_json() for r in records]
        window = settings.out / "window" / "window.json"
        if window.is_file():
            results["window"] = json.loads(window.read_text())
        (settings.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    failed = [r.name for r in records if r.status is Status.FAILED]
    say(f"done: {len(records)} steps, failed: {failed or 'none'}; outputs in {settings.out}")
    return records


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, seconds of training")
    parser.add_argument("--minutes", type=float, default=None, help="training time box (default 8; dry run 0.05)")
    parser.add_argument("--check-seconds", type=float, default=300.0, help="engine check budget (default 300)")
    parser.add_argument("--bench-seconds", type=float, default=300.0, help="benchmark budget (default 300)")
    parser.add_argument("--no-install", action="store_true", help="do not try to pip install TensorRT")
    parser.add_argument("--install-seconds", type=float, default=240.0, help="pip's time limit (default 240)")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None else (0.05 if args.dry_run else 8.0)
    if minutes <= 0:
        parser.error("--minutes must be > 0")
    return Settings(
        out=args.out.resolve(),
        dry_run=args.dry_run,
        train_minutes=minutes,
        install=not args.no_install,
        install_seconds=args.install_seconds,
        check_seconds=args.check_seconds,
        bench_seconds=args.bench_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    records = bringup(parse_args(argv))
    return 1 if any(r.status is Status.FAILED for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
