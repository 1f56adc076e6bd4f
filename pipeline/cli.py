"""The ``stbn`` console script: the model's commands (``info``, ``train``, ``eval``, from stbn.cli)
and this layer's: ``run``, ``denoise`` (which needs the engines and the video writer), ``subscribe``
and ``engines``."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from engines.base import Backend
from engines.cli import add_parser as add_engines_parser
from pipeline.denoise_file import DenoiseError, Stage, denoise_file, options_from_args
from pipeline.subscribe import add_parser as add_subscribe_parser
from stbn.adapt import Objective
from stbn.noise_estimation import Compression, Correlation, NoiseFamily


def add_denoise_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise a video file or a folder of frames (optionally adapting to it first)",
        description="Denoise INPUT (a video file or a folder of frames) into OUTPUT (a video file by its "
        "suffix, or a folder of PNG frames).",
    )
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument(
        "--noise", choices=[k.value for k in NoiseFamily], default=NoiseFamily.GAUSSIAN.value,
        help="gaussian: one level everywhere; poisson-gaussian: a sensor's shot noise, stronger in bright "
        "areas (denoised through a variance-stabilising transform)",
    )  # fmt: skip
    parser.add_argument(
        "--sigma", type=float, help="noise level 0..255; poisson-gaussian: its constant part (default: estimated)"
    )
    parser.add_argument("--gain", type=float, help="poisson-gaussian: a of variance a*x + (sigma/255)^2, x in [0, 1]")
    parser.add_argument(
        "--correlation", choices=[c.value for c in Correlation], default=Correlation.AUTO.value,
        help="correlated: a camera's noise (demosaiced, encoded), denoised on the 2x2 pixel phases at the level "
        "the model needs there; white: independent per pixel; auto: measured on the first frames",
    )  # fmt: skip
    parser.add_argument(
        "--compression", choices=["auto", *(c.value for c in Compression)], default="auto",
        help="what the frames went through: none (a raw camera, a lossless file), lossy (H.264, JPEG), unknown; "
        "auto: from the input (a video's codec, JPEG frames); picks the camera-noise level's fit",
    )  # fmt: skip
    parser.add_argument("--checkpoint", default="", help="default: the shipped CPU model")
    parser.add_argument(
        "--camera-checkpoint", default="", metavar="PATH|none",
        help="the model for correlated (camera) noise; default: the one shipped for the checkpoint's preset, "
        "none: the main model on the 2x2 pixel phases",
    )  # fmt: skip
    parser.add_argument(
        "--lookahead", type=int, help="stream causally with this look-ahead (default: offline, bidirectional)"
    )
    parser.add_argument(
        "--backend", default="auto", choices=[b.value for b in Backend], help="engine for --lookahead"
    )
    parser.add_argument("--chunk", type=int, default=16, help="offline: frames per chunk (memory bound)")
    parser.add_argument("--adapt", type=int, default=0, metavar="N", help="self-supervised steps on the input first")
    parser.add_argument("--adapt-time", type=float, metavar="SECONDS", help="adapt for this long (alone or with N)")
    parser.add_argument("--adapt-lr", type=float, default=2e-3, help="peak of a cosine schedule")
    parser.add_argument(
        "--adapt-objective", choices=["auto", *(o.value for o in Objective)], default="auto",
        help="trained: the checkpoint's own loss (needs the right --noise); mean: blind-spot L2 of the prior "
        "mean (any noise, weaker); auto: trained unless the noise looks signal-dependent under --noise gaussian",
    )  # fmt: skip
    parser.add_argument("--save-adapted", metavar="PATH", help="write the adapted checkpoint here")
    parser.add_argument("--force", action="store_true", help="replace an existing OUTPUT")
    parser.add_argument(
        "--compare", type=Path, metavar="PAGE.html",
        help="also write a self-contained before/after page (a few frames, noisy | denoised slider)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run_denoise)
    return parser


def _bar(stage: Stage, total: int | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=stage.value, unit="frame" if stage is Stage.DENOISE else "step", dynamic_ncols=True)


class _Terminated(KeyboardInterrupt):
    """SIGTERM (systemd, Docker, Kubernetes stopping the job): handled like Ctrl-C."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


def run_denoise(args: argparse.Namespace) -> int:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        options = options_from_args(args)
        summary = denoise_file(args.input, args.output, options, progress=None if args.no_progress else _bar)
    except (DenoiseError, ValueError) as exc:
        print(f"stbn denoise: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"stbn denoise: {'terminated' if terminated else 'interrupted'}; no output written", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(summary.line())
    return 0


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    from pipeline.run import add_arguments, run

    parser = subparsers.add_parser(
        "run", help="the live pipeline (cameras, RTSP, files -> denoised frames over ZeroMQ, RTSP, files)",
        description="Run the live denoising pipeline on a config (default: the embedded one); the same as "
        "python run_pipeline.py.",
    )  # fmt: skip
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


# the commands next to run and denoise: receiving a run's frames, managing the inference backends
TOOL_COMMANDS = (add_subscribe_parser, add_engines_parser)


def main(argv: list[str] | None = None) -> int:
    """This layer's commands in one process (``python -m pipeline.cli``); the ``stbn`` console script is
    cluster.cli's, which adds ``--cluster`` to ``run`` and ``denoise``."""
    from stbn.cli import main as stbn_main

    return stbn_main(argv, extra_commands=(add_run_parser, add_denoise_parser, *TOOL_COMMANDS))


if __name__ == "__main__":
    raise SystemExit(main())
