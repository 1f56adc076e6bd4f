"""Training throughput: where a training step's time goes (the network on the device, or drawing the
synthetic clips), for a preset at a few batch sizes.

    python bench/training_speed.py --device cuda --preset gpu-rt --batch-sizes 4 16 32 --workers 12

Rows: ms per step on one batch held on the device (the network alone: forward, NLL, backward,
Adam), ms per step drawing every batch (in the training process, or in ``--workers`` processes),
and the clips per second of each. ``--compile MODE`` adds, per batch size, the same device-only
step compiled (``optim.compile``: default, reduce-overhead, max-autotune), its compile time and
its speed-up over eager, measured in the same run:

    python bench/training_speed.py --device cuda --preset gpu-rt --batch-sizes 4 32 --compile reduce-overhead
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stbn.training.config import CompileMode, Precision, load_train_config
from stbn.training.sources import CleanClipSampler, SyntheticNoiseSource
from stbn.training.trainer import Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_step_ms(trainer: Trainer, batch: Any, steps: int) -> float:
    """Median ms of ``steps`` training steps on one batch held on the device, after 3 warm-up steps."""
    times = []
    for i in range(steps + 3):
        _sync(trainer.device)
        start = time.perf_counter()
        trainer.train_step(batch)
        _sync(trainer.device)
        if i >= 3:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs/train-gpu-rt.yaml"))
    parser.add_argument("--preset", default=None, help="override the config's preset")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default=None, choices=[p.value for p in Precision])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 16])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-wallpapers", action="store_true", help="bundled photos only (faster start)")
    parser.add_argument("--compile", type=CompileMode, default=CompileMode.OFF, help="also time the compiled step")
    args = parser.parse_args()
    config = load_train_config(args.config)
    optim = config.optim if args.precision is None else dataclasses.replace(config.optim, precision=args.precision)
    data = dataclasses.replace(config.data, wallpapers=config.data.wallpapers and not args.no_wallpapers)
    config = config.replace(
        device=args.device, optim=optim, data=data, output_dir="/tmp/stbn-training-speed", checkpoint=None
    )
    if args.preset:
        config = config.replace(preset=args.preset)
    sampler = CleanClipSampler.from_config(config.data)
    rows = [
        f"training step, preset {config.preset}, {config.optim.precision.value}, T {config.data.frames[1]}, "
        f"crop {config.data.crop[1]}",
        "",
        "| batch | device only ms/step | with data ms/step | data workers | clips/s device only | clips/s with data |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    compiled_rows = [
        "",
        f"compiled ({args.compile.value}) against eager, device only, same batches",
        "",
        "| batch | eager ms/step | compiled ms/step | speed-up | compile time |",
        "|---:|---:|---:|---:|---:|",
    ]
    for batch in args.batch_sizes:
        run = config.replace(data=dataclasses.replace(config.data, batch_size=batch, workers=args.workers))
        source = SyntheticNoiseSource(sampler, run.data, run.noise)
        trainer = Trainer(run, source, progress=False)
        device = trainer.device
        fixed = source.next(np.random.default_rng(0), torch.Generator().manual_seed(0))
        device_ms = _median_step_ms(trainer, fixed, args.steps)
        if args.compile is not CompileMode.OFF:
            compiled = Trainer(run.replace(optim=dataclasses.replace(run.optim, compile=args.compile)), source,
                               progress=False)  # fmt: skip
            _sync(device)
            start = time.perf_counter()
            compiled.train_step(fixed)  # the compilation
            _sync(device)
            compile_s = time.perf_counter() - start
            compiled_ms = _median_step_ms(compiled, fixed, args.steps)
            compiled_rows.append(
                f"| {batch} | {device_ms:.1f} | {compiled_ms:.1f} | {device_ms / compiled_ms:.2f}x "
                f"| {compile_s:.0f} s |"
            )
            print(compiled_rows[-1], flush=True)
            del compiled
        batches = trainer._batches()
        next(batches)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step(next(batches))
        _sync(device)
        data_ms = (time.perf_counter() - start) * 1e3 / args.steps
        rows.append(
            f"| {batch} | {device_ms:.1f} | {data_ms:.1f} | {args.workers} | {1e3 * batch / device_ms:.0f} | "
            f"{1e3 * batch / data_ms:.0f} |"
        )
        print(rows[-1], flush=True)
        del batches
    if args.compile is not CompileMode.OFF:
        rows += compiled_rows
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
