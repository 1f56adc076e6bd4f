"""One GPU window of cumulative `gpu-rt` training: every lent window moves the model forward from where
the last one stopped, instead of starting over.

    python scripts/gpu_window.py train OUT [--minutes 10] [--dry-run]   # on the GPU machine
    python scripts/gpu_window.py land OUT [--commit]                     # here, with OUT fetched back

``train`` resumes ``configs/train-gpu-rt.yaml`` from the committed state (``weights/training/
gpu-rt-state.pt``: weights, optimiser, schedule, data RNG, iteration; none the first time), trains
for ``--minutes`` more of step time (the learning-rate schedule runs over the config's iterations,
across windows), then scores the result, the shipped ``weights/stbn-gpu-rt.pt`` and the shipped CPU
model over every evaluation group (``stbn eval``, streaming L=2, AWGN sigma 10/30/50) and writes
``OUT/window.json``. It runs the project's own commands (``stbn train``, ``stbn eval``), nothing
else. ``land`` puts the new state where the next window finds it, ships the new weights when they
beat the shipped `gpu-rt`, appends the window to ``docs/gpu/windows.md`` and, with ``--commit``,
commits those files. ``--dry-run`` does the same on a CPU in about a minute (tiny clips, bundled
photos, a seconds-long box), for the test that keeps this script from rotting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from stbn.training.config import resolve_config_paths

ROOT = Path(__file__).resolve().parents[1]
STATE = Path("weights/training/gpu-rt-state.pt")  # relative to the repository root
SHIPPED = Path("weights/stbn-gpu-rt.pt")
CPU_MODEL = Path("weights/stbn-cpu-rt.pt")
WINDOWS_LOG = Path("docs/gpu/windows.md")
CONFIG = ROOT / "configs/train-gpu-rt.yaml"
MAX_STATE_MB = 25  # the state is committed: it must stay small
EVAL_ROW = "stbn-L2"

# the dry run: the same sequence on a CPU in about a minute
DRY_RUN = {
    "device": "cpu", "threads": 1, "log_every": 5, "checkpoint_every": 0,
    "data": {"wallpapers": False, "synthetic_fraction": 1.0, "videos": [], "frames": [3, 3], "crop": [32, 32],
             "batch_size": 2, "workers": 0},
    "optim": {"precision": "fp32"},
    "flow_pretrain": {"iterations": 10, "batch_size": 2, "crop": 32},
    "distill": {"start": 5},
    "val": {"every": 0, "clips": 1, "frames": 3, "size": 32},
}  # fmt: skip
DRY_EVAL = ["--sigmas", "30", "--group-frames", "3", "--group-size", "32x48"]
FULL_EVAL = ["--sigmas", "10", "30", "50"]


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _stbn(*args: str) -> None:
    """Run one of the project's commands; its output goes to this script's."""
    command = [sys.executable, "-m", "pipeline.cli", *args]
    print("+ stbn " + " ".join(args), flush=True)
    done = subprocess.run(command, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if done.returncode != 0:
        raise SystemExit(f"gpu_window: `stbn {args[0]}` failed (exit {done.returncode})")


def _score(checkpoint: Path, out: Path, name: str, dry_run: bool) -> float:
    """Mean PSNR of the live path (streaming L=2) over every content group and sigma."""
    report = out / f"eval-{name}.json"
    noise = DRY_EVAL if dry_run else FULL_EVAL
    _stbn("eval", "--checkpoint", str(checkpoint), "--dataset", "groups", "--methods", "stbn-stream",
          "--lookaheads", "2", "--no-ssim", "--quiet", "--json", str(report), *noise)  # fmt: skip
    datasets = json.loads(report.read_text())["datasets"]
    scores = [per[EVAL_ROW]["mean_psnr"] for d in datasets for per in d["results"].values()]
    return round(sum(scores) / len(scores), 3)


def train(out: Path, minutes: float, dry_run: bool, root: Path) -> dict[str, Any]:
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    state, before = root / STATE, {"iteration": 0, "train_seconds": 0.0}
    if state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=False)
        before = {"iteration": int(saved["iteration"]), "train_seconds": float(saved["train_seconds"])}
        shutil.copyfile(state, run_dir / "state.pt")
        print(f"resuming from {STATE}: iteration {before['iteration']}, "
              f"{before['train_seconds'] / 60:.1f} min of training so far", flush=True)  # fmt: skip
    else:
        print(f"no {STATE}: the first window starts from scratch (flow pretraining first)", flush=True)
    config = yaml.safe_load(CONFIG.read_text())
    resolve_config_paths(config, CONFIG.parent)  # the copy below lives in OUT, the paths stay the repository's
    if dry_run:
        config = _merge(config, DRY_RUN)
    config_path = out / "train-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    limit = before["train_seconds"] / 60.0 + minutes  # the box is cumulative: this window adds `minutes`
    started = time.time()
    _stbn("train", "--config", str(config_path), "--resume", "--output-dir", str(run_dir), "--no-progress",
          "--time-limit-minutes", f"{limit:.4f}", "--checkpoint", str(out / "stbn-gpu-rt.pt"))  # fmt: skip
    after = torch.load(run_dir / "state.pt", map_location="cpu", weights_only=False)
    scores = {"gpu-rt (this window)": _score(out / "stbn-gpu-rt.pt", out, "gpu-rt", dry_run)}
    if (root / SHIPPED).is_file():
        scores["gpu-rt (shipped)"] = _score(root / SHIPPED, out, "gpu-rt-shipped", dry_run)
    scores["cpu-rt (shipped)"] = _score(root / CPU_MODEL, out, "cpu-rt", dry_run)
    new = scores["gpu-rt (this window)"]
    window = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "dry_run": dry_run,
        "minutes": minutes,
        "wall_minutes": round((time.time() - started) / 60.0, 2),
        "iterations": [before["iteration"], int(after["iteration"])],
        "train_minutes": [round(before["train_seconds"] / 60, 2), round(float(after["train_seconds"]) / 60, 2)],
        "scores": scores,
        "score": f"mean PSNR (dB) of {EVAL_ROW} over the content groups, AWGN sigma "
        + ("30 (dry run)" if dry_run else "10/30/50"),
        "ship": new > scores.get("gpu-rt (shipped)", float("-inf")),
        "beats_cpu_rt_by": round(new - scores["cpu-rt (shipped)"], 3),
    }
    (out / "window.json").write_text(json.dumps(window, indent=1))
    print(json.dumps(window, indent=1))
    return window


def land(out: Path, root: Path, commit: bool) -> list[Path]:
    """Put OUT's state and (when it won) weights into the repository, log the window; returns the paths."""
    window = json.loads((out / "window.json").read_text())
    state = out / "run" / "state.pt"
    size_mb = state.stat().st_size / 2**20
    if size_mb > MAX_STATE_MB:
        raise SystemExit(f"gpu_window: the state is {size_mb:.1f} MB, over the {MAX_STATE_MB} MB kept in git")
    changed = [STATE, WINDOWS_LOG]
    (root / STATE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(state, root / STATE)
    if window["ship"]:
        shutil.copyfile(out / "stbn-gpu-rt.pt", root / SHIPPED)
        changed.append(SHIPPED)
    log = root / WINDOWS_LOG
    if not log.is_file():
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(
            "# Cumulative gpu-rt training, one row per GPU window (`scripts/gpu_window.py`)\n\n"
            "Scores: mean PSNR (dB) of the live path (streaming L=2) over the evaluation's content groups.\n\n"
            "| date | device | minutes | iterations | training minutes | gpu-rt | shipped gpu-rt before | cpu-rt "
            "| shipped |\n|---|---|---:|---|---|---:|---:|---:|---|\n"
        )  # fmt: skip
    s = window["scores"]
    shipped_before = s.get("gpu-rt (shipped)")
    with log.open("a") as f:
        f.write(
            f"| {window['date']}{' (dry run)' if window['dry_run'] else ''} | {window['device']} | {window['minutes']} "
            f"| {window['iterations'][0]} -> {window['iterations'][1]} "
            f"| {window['train_minutes'][0]} -> {window['train_minutes'][1]} | {s['gpu-rt (this window)']:.2f} "
            f"| {'-' if shipped_before is None else f'{shipped_before:.2f}'} | {s['cpu-rt (shipped)']:.2f} "
            f"| {'yes' if window['ship'] else 'no'} |\n"
        )  # fmt: skip
    print(f"landed: {', '.join(str(p) for p in changed)}")
    if commit:
        subprocess.run(["git", "add", *map(str, changed)], cwd=root, check=True)
        shipped = "shipped" if window["ship"] else "not shipped"
        message = (f"GPU window: gpu-rt iterations {window['iterations'][0]} -> {window['iterations'][1]}, "
                   f"{s['gpu-rt (this window)']:.2f} dB ({shipped})")  # fmt: skip
        subprocess.run(["git", "commit", "-q", "-m", message], cwd=root, check=True)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="on the GPU machine: resume, train a time box, evaluate")
    p.add_argument("out", type=Path)
    p.add_argument("--minutes", type=float, default=10.0, help="step time this window adds")
    p.add_argument("--dry-run", action="store_true", help="a CPU, tiny sizes, about a minute")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # tests: another checkout
    p = sub.add_parser("land", help="here: keep the state, ship winning weights, log (and commit) the window")
    p.add_argument("out", type=Path)
    p.add_argument("--commit", action="store_true")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.out.resolve(), args.minutes, args.dry_run, args.root.resolve())
    else:
        land(args.out.resolve(), args.root.resolve(), args.commit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
