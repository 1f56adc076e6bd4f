"""GPU bring-up in one go: train ``gpu-rt`` inside a time box, evaluate it against the shipped CPU
model, export and build the TensorRT engine and check it against PyTorch, benchmark ``gpu-rt`` and
``base`` at 720p and 1080p, and write everything into OUT_DIR.

    bash scripts/gpu_bringup.sh [--dry-run] [--minutes N] OUT_DIR

Every step has its own time budget and is recorded (ok / failed / skipped, with the reason); a
failing step never stops the next one. ``--dry-run`` runs the same sequence on the CPU with tiny
sizes and seconds of training, skipping what needs CUDA, so that the script is tested in CI.

OUT_DIR receives: ``stbn-gpu-rt.pt`` (the best checkpoint by validation), ``stbn-gpu-rt.md`` (a model
card draft with the tables), ``results.json`` (every figure), ``train/`` (resumable state and the
training log) and, from the shell wrapper, ``bringup.log``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import stbn  # noqa: E402
from engines import BackendUnavailable, EngineConfig, create_engine  # noqa: E402
from stbn.evaluation.datasets import CONTENT_GROUPS, bikes  # noqa: E402
from stbn.evaluation.metrics import mean_frame_psnr, to_uint8  # noqa: E402
from stbn.evaluation.noise import add_noise  # noqa: E402
from stbn.evaluation.protocol import stbn_offline, stbn_streaming  # noqa: E402
from stbn.io import DataUnavailable  # noqa: E402
from stbn.noise_estimation import NoiseConfig, NoiseMode  # noqa: E402
from stbn.streaming import StreamingDenoiser  # noqa: E402
from stbn.training.config import load_train_config  # noqa: E402
from stbn.training.motion import synthetic_clip  # noqa: E402
from stbn.training.photos import (  # noqa: E402
    HELDOUT_PHOTOS,
    TRAIN_PHOTOS,
    WALLPAPER_TRAIN_PHOTOS,
    default_cache_dir,
    load_photo,
    load_photos,
)
from stbn.training.run import train  # noqa: E402
from stbn.training.sources import resolve_video_path  # noqa: E402

SHIPPED_CPU = ROOT / "weights" / "stbn-cpu-rt.pt"
TRAIN_CONFIG = ROOT / "configs" / "train-gpu-rt.yaml"
RESOLUTIONS = {"720p": (720, 1280), "1080p": (1080, 1920)}


class Status(enum.Enum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class Skip(Exception):
    """A step that cannot run here; the message says why."""


@dataclass(frozen=True)
class Settings:
    out: Path
    dry_run: bool
    train_minutes: float
    batch_size: int
    workers: int
    install_seconds: float
    eval_seconds: float
    check_seconds: float
    bench_seconds: float
    install: bool
    cache_dir: Path

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"


@dataclass
class StepRecord:
    name: str
    status: Status
    seconds: float
    budget_s: float
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"status": self.status.value}


@dataclass
class Report:
    settings: Settings
    environment: dict[str, Any] = field(default_factory=dict)
    steps: list[StepRecord] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        settings = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self.settings).items()}
        return {
            "settings": settings,
            "environment": self.environment,
            "steps": [s.to_json() for s in self.steps],
            **self.figures,
        }


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the steps ---------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "cpus": os.cpu_count(),
        "host": platform.node(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cuda_version": torch.version.cuda,
        }
    env["tensorrt"] = tensorrt_status()
    try:
        import onnxruntime

        env["onnxruntime"] = f"{onnxruntime.__version__} {onnxruntime.get_available_providers()}"
    except ImportError as exc:
        env["onnxruntime"] = f"not importable: {exc}"
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


def install_tensorrt(settings: Settings, budget: float) -> dict[str, Any]:
    """The project's ``tensorrt`` extra, pinned to the installed torch so that pip never replaces it."""
    if settings.dry_run:
        raise Skip("dry run: nothing is installed")
    if not settings.install:
        raise Skip("--no-install")
    if tensorrt_status().startswith("available"):
        raise Skip(f"already {tensorrt_status()}")
    torch_release = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--retries",
        "0",
        "--timeout",
        "5",
        f"torch-tensorrt=={torch_release}.*",
    ]
    say(f"install: {' '.join(cmd[3:])}")
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"pip did not finish within {budget:.0f} s") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-2:])
        raise RuntimeError(f"pip install failed (exit {done.returncode}); the rest runs without TensorRT: {tail}")
    return {"tensorrt": tensorrt_status()}


def fetched(package: str) -> bool:
    """Whether a Debian package is already in the cache (a dry run never downloads one)."""
    return (default_cache_dir() / "debian" / package / ".unpacked").is_file()


def available_photos(names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """The photos that are here (never downloading one), and why each other one is not."""
    usable, missing = [], {}
    for name in names:
        try:
            if name.startswith("deb:"):
                _, package, inner = name.split(":", 2)
                if not (default_cache_dir() / "debian" / package / inner).is_file():
                    raise DataUnavailable(f"not in the cache {default_cache_dir()}")
            else:
                load_photo(name)
            usable.append(name)
        except (DataUnavailable, ImportError, OSError) as exc:
            missing[name] = f"{exc.__class__.__name__}: {exc}"
    return usable, missing


def train_config(settings: Settings, report: Report) -> Any:
    """configs/train-gpu-rt.yaml (the shipped recipe) in a time box, with what data this machine has."""
    config = load_train_config(TRAIN_CONFIG)
    data = config.data
    wanted = (data.photos or TRAIN_PHOTOS) + (
        WALLPAPER_TRAIN_PHOTOS if data.wallpapers and not settings.dry_run else ()
    )
    photos, missing = available_photos(wanted)
    videos = []
    for video in data.videos:
        try:
            resolve_video_path(video.path)
            videos.append(video)
        except (DataUnavailable, OSError, ValueError) as exc:
            missing[video.path] = str(exc)
    data = dataclasses.replace(
        data,
        photos=tuple(photos),
        wallpapers=False,  # those that are here are in `photos`
        videos=tuple(videos),
        synthetic_fraction=data.synthetic_fraction if videos else 1.0,
        batch_size=settings.batch_size,
        workers=settings.workers,
    )
    minutes = settings.train_minutes
    flow_minutes = 0.2 * minutes  # the flow network is small: a fifth of the box trains it well past zero flow
    optim = dataclasses.replace(
        config.optim,
        iterations=10**7,  # an upper bound: the time box ends the run
        schedule="time",
        time_limit_minutes=minutes - flow_minutes,
        precision="bf16",
    )
    flow = dataclasses.replace(config.flow_pretrain, iterations=10**7, time_limit_minutes=flow_minutes)
    changes: dict[str, Any] = {}
    if settings.dry_run:  # tiny sizes: the sequence, not the model, is under test
        data = dataclasses.replace(data, frames=(3, 3), crop=(32, 32), batch_size=2, videos=(), synthetic_fraction=1.0)
        flow = dataclasses.replace(flow, batch_size=2, crop=32)
        changes["val"] = dataclasses.replace(config.val, every=4, clips=1, frames=3, size=32)
        changes["distill"] = dataclasses.replace(config.distill, start=2)
    report.figures["train_data"] = {
        "photos": photos,
        "videos": [v.path for v in data.videos],
        "wallpapers": "left out: dry run"
        if settings.dry_run
        else f"{sum(p.startswith('deb:') for p in photos)} of {len(WALLPAPER_TRAIN_PHOTOS)}",
        "left_out": missing,
    }
    if not settings.dry_run:
        changes["val"] = dataclasses.replace(config.val, every=250)
    return config.replace(
        device=settings.device,
        threads=0,
        output_dir=str(settings.out / "train"),
        checkpoint=str(settings.out / "stbn-gpu-rt.pt"),
        log_every=25 if not settings.dry_run else 1,
        checkpoint_every=250 if not settings.dry_run else 0,  # resumable state
        data=data,
        optim=optim,
        flow_pretrain=flow,
        **changes,
    )


def run_training(settings: Settings, report: Report) -> dict[str, Any]:
    config = train_config(settings, report)
    say(
        f"train gpu-rt on {config.device}: {settings.train_minutes} min, batch {config.data.batch_size}, "
        f"T {config.data.frames}, crop {config.data.crop}, {config.data.workers} data workers, bf16"
    )
    summary = train(config, resume=True, progress=False)
    log = [json.loads(line) for line in (settings.out / "train" / "log.jsonl").read_text().splitlines()]
    vals = [
        (e["iteration"], round(e["psnr"], 2), round(e.get("prior_mean_psnr", float("nan")), 2))
        for e in log
        if e.get("phase") == "val"
    ]
    steps = [e for e in log if e.get("phase") == "train"]
    flow = [e for e in log if e.get("phase") == "flow_pretrain"]
    result = {
        **summary,
        "batch_size": config.data.batch_size,
        "frames": list(config.data.frames),
        "crop": list(config.data.crop),
        "flow_pretrain_iterations": flow[-1]["iteration"] if flow else 0,
        "flow_epe": [flow[-1]["epe"], flow[-1]["epe_zero_flow"]] if flow else None,
        "validation": vals,
        "steps_per_second": round(summary["iterations"] / max(summary["train_seconds"], 1e-9), 2),
        "last_train_psnr": steps[-1].get("psnr") if steps else None,
    }
    report.figures["train"] = result
    say(f"train: {result['iterations']} iterations, best validation {summary.get('best_val_psnr')}")
    return result


def evaluation_clips(settings: Settings) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The first clip of each content group and bikes, at the evaluation's protocol (same seeds as
    ``stbn eval --dataset groups``); what cannot be loaded here is named."""
    frames, size = (4, (64, 96)) if settings.dry_run else (8, (256, 384))
    clips, missing = {}, {}
    for index, group in enumerate(CONTENT_GROUPS):
        if settings.dry_run and not fetched("plasma-workspace-wallpapers"):
            missing[group.name] = "dry run: plasma-workspace-wallpapers is not in the cache"
            continue
        try:
            photos = load_photos(group.photos)
        except (DataUnavailable, OSError) as exc:
            missing[group.name] = str(exc)
            continue
        rng = np.random.default_rng([7, index, 0])
        clips[group.name] = synthetic_clip(photos, frames, size, rng, group.motion, background=0).frames * group.gain
    try:
        clips["bikes"] = bikes(frames, size).sequences[0].clean
    except (DataUnavailable, OSError) as exc:
        missing["bikes"] = str(exc)
    if not clips:  # nothing of the evaluation set here: the held-out photos keep the step meaningful
        rng = np.random.default_rng(2025)
        clips["held-out photos"] = synthetic_clip(load_photos(HELDOUT_PHOTOS), frames, size, rng).frames
    return clips, missing




def _score(estimate: np.ndarray, clean: np.ndarray) -> float:
    """As the evaluation protocol scores a clip: the estimate clipped to [0, 1], mean per-frame PSNR."""
    return mean_frame_psnr(np.clip(estimate, 0, 1), clean)


def run_evaluation(settings: Settings, report: Report, deadline: float) -> dict[str, Any]:
    trained = settings.out / "stbn-gpu-rt.pt"
    if not trained.is_file():
        raise Skip("no trained gpu-rt checkpoint (the training step failed)")
    device = torch.device(settings.device)
    models = {
        "gpu-rt": stbn.load_checkpoint(trained, preset="gpu-rt").model.to(device).eval(),
        "cpu-rt (shipped)": stbn.load_checkpoint(SHIPPED_CPU, preset="cpu-rt").model.to(device).eval(),
    }
    clips, missing = evaluation_clips(settings)
    sigmas = (30.0,) if settings.dry_run else (10.0, 30.0, 50.0)
    rows = ["noisy", "gpu-rt", "gpu-rt prior mean", "gpu-rt L=0", "cpu-rt (shipped)", "cpu-rt (shipped) L=0"]
    scores: dict[str, dict[str, dict[str, float]]] = {row: {} for row in rows}
    done = []
    for clip_name, clean in clips.items():
        if time.time() > deadline:  # keep what is scored; name the rest
            missing[clip_name] = "out of the step's time budget"
            continue
        done.append(clip_name)
        for sigma in sigmas:
            key = f"{sigma:g}"
            noisy = add_noise(clean, sigma)
            scores["noisy"].setdefault(clip_name, {})[key] = _score(noisy, clean)
            for name, model in models.items():
                post, prior_mean = stbn_offline(model, noisy, sigma)
                scores[name].setdefault(clip_name, {})[key] = _score(post, clean)
                if name == "gpu-rt":
                    scores["gpu-rt prior mean"].setdefault(clip_name, {})[key] = _score(prior_mean, clean)
                streamed = stbn_streaming(model, noisy, sigma, 0)
                scores[f"{name} L=0"].setdefault(clip_name, {})[key] = _score(streamed, clean)
    means = {
        row: {key: float(np.mean([scores[row][c][key] for c in done])) for key in (f"{s:g}" for s in sigmas)}
        for row in rows
    }
    result = {"clips": done, "left_out": missing, "sigmas": list(sigmas), "per_clip": scores, "mean": means}
    report.figures["evaluation"] = result
    say("evaluation: " + ", ".join(f"{row} {np.mean(list(v.values())):.2f}" for row, v in means.items()))
    return result


def _clip_720p(settings: Settings, frames: int) -> np.ndarray:
    """A noisy uint8 clip for the engine check (held-out photos, synthetic motion, sigma 25)."""
    size = (64, 96) if settings.dry_run else RESOLUTIONS["720p"]
    clean = synthetic_clip(load_photos(HELDOUT_PHOTOS), frames, size, np.random.default_rng(3)).frames
    return to_uint8(add_noise(clean, 25.0))


def _stream(config: EngineConfig, model: stbn.STBN, clip: np.ndarray, lookahead: int) -> np.ndarray:
    with create_engine(config, model=model) as engine:
        engine.build(*clip.shape[1:3])
        denoiser = StreamingDenoiser(engine, lookahead, NoiseConfig(NoiseMode.FIXED, 25.0))
        out = [f.image for f in denoiser.stream(clip)]
    return np.stack(out)


def _agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {
        "max_abs_diff": int(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "psnr_db": 10 * np.log10(255.0**2 / max(mse, 1e-12)),
    }


def run_engine_check(settings: Settings, report: Report, deadline: float) -> dict[str, Any]:
    """The TensorRT fp16 engine (build time, agreement with PyTorch fp32 on a noisy 720p clip at
    L=2); PyTorch fp16 against fp32 (the precision the engine runs); ONNX Runtime (the exported
    step graphs) against PyTorch on a small size."""
    trained = settings.out / "stbn-gpu-rt.pt"
    model = (
        stbn.load_checkpoint(trained, preset="gpu-rt").model if trained.is_file() else stbn.build_model("gpu-rt")
    ).eval()
    clip = _clip_720p(settings, 4 if settings.dry_run else 12)
    h, w = clip.shape[1:3]
    result: dict[str, Any] = {"weights": str(trained) if trained.is_file() else "random init", "resolution": f"{w}x{h}"}
    device = settings.device
    reference = _stream(EngineConfig(backend="torch", device=device, precision="fp32"), model, clip, 2)
    trt = tensorrt_status()
    if trt.startswith("available") and device == "cuda":
        start = time.time()
        config = EngineConfig(backend="tensorrt", device=device, precision="fp16", cache_dir=str(settings.cache_dir))
        out = _stream(config, model, clip, 2)
        result["tensorrt_fp16_vs_torch_fp32"] = _agreement(out, reference) | {
            "build_and_run_s": round(time.time() - start, 1)
        }
    else:
        result["tensorrt"] = trt if device == "cuda" else "skipped: needs CUDA"
    if device == "cuda":
        out = _stream(EngineConfig(backend="torch", device=device, precision="fp16"), model, clip, 2)
        result["torch_fp16_vs_torch_fp32"] = _agreement(out, reference)
    small = clip[:4, :64, :96] if not settings.dry_run else clip
    ref_small = _stream(EngineConfig(backend="torch", device="cpu"), model, small, 2)  # (moves the model back)
    ort = _stream(EngineConfig(backend="onnxruntime", device="cpu", cache_dir=str(settings.cache_dir)), model, small, 2)
    result["onnxruntime_vs_torch_fp32_96x64"] = _agreement(ort, ref_small)
    report.figures["engine_check"] = result
    say(f"engine check: {json.dumps(result)}")
    return result


def time_cell(
    config: EngineConfig, model: stbn.STBN, hw: tuple[int, int], lookahead: int, frames: int
) -> dict[str, Any]:
    """ms per pushed frame once the window is full (upload and download included): p50 and p95."""
    cuda = config.device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.time()
    with create_engine(config, model=model) as engine:
        engine.build(*hw)
        engine.warmup(2)
        build_s = time.time() - start
        denoiser = StreamingDenoiser(engine, lookahead, NoiseConfig(NoiseMode.FIXED, 25.0))
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (hw[0], hw[1] + 2 * (frames + lookahead + 1), 3), dtype=np.uint8)
        times = []
        for i in range(frames + lookahead + 1):
            frame = np.ascontiguousarray(base[:, 2 * i : 2 * i + hw[1]])
            t0 = time.perf_counter()
            denoiser.push(frame, i)
            if cuda:
                torch.cuda.synchronize()
            if i > lookahead:
                times.append((time.perf_counter() - t0) * 1e3)
    cell = {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
        "fps": round(1e3 / statistics.median(times), 1),
        "build_s": round(build_s, 1),
    }
    if cuda:
        cell["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)  # PyTorch's allocations only
    return cell


def run_benchmark(settings: Settings, report: Report, deadline: float) -> dict[str, Any]:
    trained = settings.out / "stbn-gpu-rt.pt"
    torch.manual_seed(0)
    models = {
        "gpu-rt": stbn.load_checkpoint(trained, preset="gpu-rt").model
        if trained.is_file()
        else stbn.build_model("gpu-rt"),
        "base": stbn.build_model("base"),  # untrained: speed only
    }
    if settings.dry_run:
        resolutions, frames, variants = {"96x64": (64, 96)}, 3, [("torch", "fp32")]
    else:
        resolutions, frames, variants = RESOLUTIONS, 20, [("tensorrt", "fp16"), ("torch", "fp16"), ("torch", "fp32")]
    cells: list[dict[str, Any]] = []
    skipped: list[str] = []
    for preset, model in models.items():
        for backend, precision in variants:
            config = EngineConfig(
                backend=backend, device=settings.device, precision=precision, cache_dir=str(settings.cache_dir)
            )
            for res, hw in resolutions.items():
                for lookahead in (0, 2):
                    label = f"{preset} {backend} {precision} {res} L={lookahead}"
                    if time.time() > deadline:
                        skipped.append(f"{label}: out of the step's time budget")
                        continue
                    try:
                        cell = time_cell(config, model, hw, lookahead, frames)
                    except BackendUnavailable as exc:
                        skipped.append(f"{preset} {backend} {precision}: {exc}")
                        break
                    except torch.cuda.OutOfMemoryError as exc:
                        skipped.append(f"{label}: out of GPU memory ({exc})")
                        continue
                    cells.append(
                        {
                            "preset": preset,
                            "backend": backend,
                            "precision": precision,
                            "resolution": res,
                            "lookahead": lookahead,
                            **cell,
                        }
                    )
                    say(f"bench {label}: {cell}")
                else:
                    continue
                break
    result = {
        "cells": cells,
        "skipped": skipped,
        "weights": {"gpu-rt": str(trained) if trained.is_file() else "random init", "base": "random init (speed only)"},
    }
    report.figures["benchmark"] = result
    return result


# --- the model card draft -------------------------------------------------------------------------------


def model_card(report: Report) -> str:
    env, figures, s = report.environment, report.figures, report.settings
    train_fig = figures.get("train", {})
    lines = [
        "# stbn-gpu-rt (draft written by scripts/gpu_bringup.sh)",
        "",
        f"- Machine: {env.get('gpu', 'no GPU')} ({env.get('gpu_memory_gib', '-')} GiB), {env.get('cpus')} CPUs, "
        f"torch {env.get('torch')}, CUDA {env.get('cuda_version', '-')}; TensorRT {env.get('tensorrt')}.",
        f"- Command: `bash scripts/gpu_bringup.sh {'--dry-run ' if s.dry_run else ''}--minutes {s.train_minutes:g} "
        "OUT_DIR`.",
        f"- Recipe: `configs/train-gpu-rt.yaml` in a {s.train_minutes:g}-minute time box (a fifth of it flow "
        f"pretraining), bf16 autocast, batch {train_fig.get('batch_size')}, T {train_fig.get('frames')}, crops "
        f"{train_fig.get('crop')}, learning-rate milestones as fractions of the time box.",
    ]
    if train_fig:
        lines += [
            f"- Trained {train_fig.get('iterations')} iterations in {train_fig.get('train_seconds', 0):.0f} s "
            f"({train_fig.get('steps_per_second')} it/s) after {train_fig.get('flow_pretrain_iterations')} flow "
            f"pretraining iterations (EPE {train_fig.get('flow_epe')}: trained vs zero flow); best validation "
            f"(2 held-out clips, sigma 30) {train_fig.get('best_val_psnr')} dB. Validation history "
            f"(iteration, posterior dB, prior-mean dB): {train_fig.get('validation')}.",
        ]
    data = figures.get("train_data")
    if data:
        lines.append(
            f"- Data: {len(data['photos'])} photos (Debian training wallpapers: {data['wallpapers']}), videos "
            f"{data['videos']}; "
            f"left out here: {sorted(data['left_out']) or 'nothing'}."
        )
    evaluation = figures.get("evaluation")
    if evaluation:
        sig = evaluation["sigmas"]
        lines += [
            "",
            "## Evaluation (PSNR dB, mean over clips)",
            "",
            f"Clips: {', '.join(evaluation['clips'])} (the first clip of each `stbn eval --dataset groups` group and "
            f"bikes; {'dry-run size' if s.dry_run else '8 frames, 384x256'}); AWGN in float, unclipped; L=0 is the "
            "causal stream on uint8 frames. Left out here: "
            f"{evaluation['left_out'] or 'nothing'}.",
            "",
            "| method | " + " | ".join(f"sigma {x:g}" for x in sig) + " | mean |",
            "|---|" + "---:|" * (len(sig) + 1),
        ]
        for row, values in evaluation["mean"].items():
            vals = [values[f"{x:g}"] for x in sig]
            lines.append(f"| {row} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {np.mean(vals):.2f} |")
    check = figures.get("engine_check")
    if check:
        lines += ["", "## Engine check", "", "```", json.dumps(check, indent=1), "```"]
    bench = figures.get("benchmark")
    if bench:
        lines += [
            "",
            "## Speed (ms per frame, streaming, upload and download included)",
            "",
            "| preset | backend | precision | resolution | L | p50 ms | p95 ms | frames/s | peak GPU MiB |",
            "|---|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for c in bench["cells"]:
            lines.append(
                f"| {c['preset']} | {c['backend']} | {c['precision']} | {c['resolution']} | {c['lookahead']} | "
                f"{c['p50_ms']} | {c['p95_ms']} | {c['fps']} | {c.get('peak_gpu_mib', '-')} |"
            )
        lines += ["", f"Skipped: {bench['skipped'] or 'nothing'}. `base` is untrained (speed only)."]
    lines += ["", "## Steps", "", "| step | status | seconds | budget s | reason |", "|---|---|---:|---:|---|"]
    for step in report.steps:
        lines.append(
            f"| {step.name} | {step.status.value} | {step.seconds:.0f} | {step.budget_s:.0f} | {step.reason} |"
        )
    lines += [
        "",
        "To ship: copy `stbn-gpu-rt.pt` to `weights/`, this card (edited) to `weights/stbn-gpu-rt.md`, and the "
        "tables to docs/BENCHMARKS.md; `train/state.pt` continues the run (`stbn train --config "
        "configs/train-gpu-rt.yaml --resume` with `output_dir` set to that folder).",
    ]
    return "\n".join(lines) + "\n"


# --- the sequence ---------------------------------------------------------------------------------------


def run_step(report: Report, name: str, budget: float, action: Callable[[float], Any]) -> None:
    say(f"step {name} (budget {budget:.0f} s)")
    start = time.time()
    try:
        action(start + budget)
        status, reason = Status.OK, ""
    except Skip as exc:
        status, reason = Status.SKIPPED, str(exc)
    except Exception as exc:  # a failing step is recorded and the next one runs
        traceback.print_exc()
        status, reason = Status.FAILED, f"{exc.__class__.__name__}: {exc}"
    record = StepRecord(name, status, round(time.time() - start, 1), budget, reason)
    report.steps.append(record)
    say(f"step {name}: {status.value} in {record.seconds:.0f} s {reason}")


def write_outputs(report: Report) -> None:
    out = report.settings.out
    (out / "results.json").write_text(json.dumps(report.to_json(), indent=1, default=str) + "\n")
    (out / "stbn-gpu-rt.md").write_text(model_card(report))


def bringup(settings: Settings) -> Report:
    settings.out.mkdir(parents=True, exist_ok=True)
    report = Report(settings)
    report.environment = environment()
    say(f"environment: {json.dumps(report.environment)}")
    if not settings.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_bringup: PyTorch sees no CUDA device; use --dry-run on a CPU")
    train_s = settings.train_minutes * 60.0
    try:
        budget = settings.install_seconds
        run_step(report, "install", budget, lambda _d: install_tensorrt(settings, budget))
        report.environment["tensorrt"] = tensorrt_status()
        # the training step's own time limits end it; the budget only records the allowance (+ data loading)
        run_step(report, "train", train_s + 120.0, lambda _d: run_training(settings, report))
        run_step(report, "evaluate", settings.eval_seconds, lambda d: run_evaluation(settings, report, d))
        run_step(report, "engine_check", settings.check_seconds, lambda d: run_engine_check(settings, report, d))
        run_step(report, "benchmark", settings.bench_seconds, lambda d: run_benchmark(settings, report, d))
    finally:
        write_outputs(report)
    failed = [s.name for s in report.steps if s.status is Status.FAILED]
    say(f"done: {len(report.steps)} steps, failed: {failed or 'none'}; outputs in {settings.out}")
    return report


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, seconds of training")
    parser.add_argument("--minutes", type=float, default=None, help="training time box (default 8; dry run 0.3)")
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (default 32; dry run 2)")
    parser.add_argument(
        "--workers", type=int, default=None, help="data worker processes (default: CPUs - 2, at most 12)"
    )
    parser.add_argument("--eval-seconds", type=float, default=None, help="evaluation budget (default 90)")
    parser.add_argument(
        "--check-seconds", type=float, default=None, help="export and engine check budget (default 150)"
    )
    parser.add_argument("--bench-seconds", type=float, default=None, help="benchmark budget (default 180)")
    parser.add_argument("--no-install", action="store_true", help="do not try to pip install TensorRT")
    parser.add_argument("--install-seconds", type=float, default=240.0, help="pip's time limit (default 240)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache" / "bringup", help="ONNX and TensorRT engines")
    args = parser.parse_args(argv)
    dry = args.dry_run
    pick = lambda value, real, dry_value: value if value is not None else (dry_value if dry else real)  # noqa: E731
    minutes = pick(args.minutes, 8.0, 0.3)
    if minutes <= 0:
        parser.error("--minutes must be > 0")
    return Settings(
        out=args.out.resolve(),
        dry_run=dry,
        train_minutes=minutes,
        batch_size=pick(args.batch_size, 32, 2),
        workers=pick(args.workers, max(0, min(12, (os.cpu_count() or 2) - 2)), 1),
        eval_seconds=pick(args.eval_seconds, 90.0, 120.0),
        check_seconds=pick(args.check_seconds, 150.0, 180.0),
        bench_seconds=pick(args.bench_seconds, 180.0, 120.0),
        install=not args.no_install,
        install_seconds=args.install_seconds,
        cache_dir=args.cache_dir.resolve(),
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    report = bringup(settings)
    return 1 if any(s.status is Status.FAILED for s in report.steps) else 0


if __name__ == "__main__":
    raise SystemExit(main())
