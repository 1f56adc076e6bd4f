"""``stbn engines build|check|pick`` (or ``python -m engines ...``): prebuild a backend's cached
graphs for a resolution, check a backend against the PyTorch fp32 reference on the same streamed
frames, and measure which CPU backend ``backend: auto`` should run on this machine."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import numpy as np

from engines.base import Backend, EngineConfig, EngineError, Precision
from engines.factory import create_engine
from engines.selection import measure_cpu_backends
from stbn.checkpoint import CheckpointError
from stbn.evaluation.metrics import psnr
from stbn.noise_estimation import NoiseConfig, NoiseMode
from stbn.streaming import StreamingDenoiser


def _config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        backend=args.backend,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
        cache_dir=args.cache_dir,
    )


def test_clip(frames: int, height: int, width: int, sigma: float, seed: int = 0) -> np.ndarray:
    """A moving gradient scene with AWGN, (frames, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    clip = []
    for t in range(frames):
        base = np.stack(
            [
                0.5 + 0.4 * np.sin((xx + 2 * t) / 17.0),
                0.5 + 0.4 * np.cos((yy - t) / 23.0),
                0.5 + 0.3 * np.sin((xx + yy + 3 * t) / 31.0),
            ],
            axis=-1,
        )
        noisy = base * 255.0 + rng.normal(0.0, sigma, base.shape)
        clip.append(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    return np.stack(clip)


def _stream(config: EngineConfig, clip: np.ndarray, lookahead: int, sigma: float) -> tuple[np.ndarray, float, str]:
    with create_engine(config) as engine:
        engine.build(*clip.shape[1:3])
        engine.warmup()
        denoiser = StreamingDenoiser(engine, lookahead, NoiseConfig(NoiseMode.FIXED, sigma))
        start = time.perf_counter()
        out = [f.image for f in denoiser.stream(clip)]
        return np.stack(out), (time.perf_counter() - start) / len(clip), engine.describe()


def _build(args: argparse.Namespace) -> int:
    with create_engine(_config(args)) as engine:
        start = time.perf_counter()
        engine.build(args.height, args.width)
        print(f"built {engine.describe()} for {args.width}x{args.height} in {time.perf_counter() - start:.1f} s")
    return 0


def _check(args: argparse.Namespace) -> int:
    clip = test_clip(args.frames, args.height, args.width, args.sigma)
    got, ms_got, name = _stream(_config(args), clip, args.lookahead, args.sigma)
    ref_config = _config(args).replace(backend="torch", precision="fp32")
    ref, ms_ref, ref_name = _stream(ref_config, clip, args.lookahead, args.sigma)
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    against_ref = psnr(got, ref, 255.0)
    print(f"{name}: {ms_got * 1e3:.1f} ms/frame; reference {ref_name}: {ms_ref * 1e3:.1f} ms/frame")
    print(
        f"max |diff| {diff.max()} levels, mean {diff.mean():.4f}, >1 level {np.mean(diff > 1):.4%}, "
        f"PSNR vs ref {against_ref:.1f} dB"
    )
    ok = against_ref >= args.min_psnr
    print("OK" if ok else f"FAIL: PSNR against the reference below {args.min_psnr} dB")
    return 0 if ok else 1


def _pick(args: argparse.Namespace) -> int:
    config = _config(args).replace(backend="auto", threads=args.threads)
    print(f"measuring every installed CPU backend for {args.precision} at {args.width}x{args.height}, "
          f"L={args.lookahead} (about a minute: each exports or compiles first) ...", flush=True)  # fmt: skip
    entry = measure_cpu_backends(config, (args.height, args.width), args.lookahead, args.frames)
    for backend, fps in sorted(entry["frames_per_s"].items(), key=lambda kv: -kv[1]):
        print(f"  {backend:12s} {fps:6.2f} frames/s")
    print(f"backend auto ({args.precision}) on this machine -> {entry['backend']}")
    return 0


DESCRIPTION = "Build, check and pick the inference backends (the same as stbn engines)."


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """build, check and pick as subcommands of ``parser``; each sets ``func`` to :func:`run`."""
    sub = parser.add_subparsers(dest="engines_command", metavar="{build,check,pick}", required=True)
    for name, func, text in (
        ("build", _build, "prebuild a backend's cached graphs for a resolution"),
        ("check", _check, "stream a test clip through a backend and compare it with PyTorch fp32"),
        ("pick", _pick, "measure the CPU backends and record the fastest for backend: auto"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--backend", default="auto", choices=[m.value for m in Backend])
        p.add_argument("--checkpoint", default="", help="default: the shipped CPU model")
        p.add_argument("--device", default="auto")
        p.add_argument("--precision", default="fp32", choices=[m.value for m in Precision])
        p.add_argument("--cache-dir", help="default: $STBN_CACHE/engines or ~/.cache/stbn/engines")
        p.add_argument("--height", type=int, default=360)
        p.add_argument("--width", type=int, default=640)
        p.set_defaults(func=run, engines_func=func)
        if name == "check":
            p.add_argument("--frames", type=int, default=12)
            p.add_argument("--lookahead", type=int, default=2)
            p.add_argument("--sigma", type=float, default=25.0)
            p.add_argument("--min-psnr", type=float, default=40.0)
        if name == "pick":
            p.add_argument("--frames", type=int, default=12)
            p.add_argument("--lookahead", type=int, default=0)
            p.add_argument("--threads", type=int, default=0, help="as engine.threads (0: the library default)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``stbn engines``."""
    parser = subparsers.add_parser("engines", help="build, check and pick the inference backends",
                                   description=DESCRIPTION)  # fmt: skip
    configure_parser(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.engines_func(args))
    except (EngineError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines", description=DESCRIPTION)
    configure_parser(parser)
    args = parser.parse_args(argv)
    return run(args)
