"""``stbn train``: from a YAML config, or ``--video noisy.mp4`` on a user's own noisy video.

Multi-process (DDP): ``torchrun --nproc_per_node 2 -m stbn.training.cli --config ...`` (gloo on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from stbn.training.config import ConfigError, TrainConfig, load_train_config


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="self-supervised training (config or --video)")
    configure_parser(parser)
    parser.set_defaults(func=run)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML training config (configs/train-cpu-rt.yaml)")
    parser.add_argument("--video", help="train on this noisy video (or frame folder) only; no clean frames")
    parser.add_argument("--sigma", type=float, help="noise level of --video, 0..255 (default: estimated)")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames of --video")
    parser.add_argument("--preset", help="override the config's preset")
    parser.add_argument("--iterations", type=int, help="override optim.iterations")
    parser.add_argument("--time-limit-minutes", type=float, help="override optim.time_limit_minutes")
    parser.add_argument("--output-dir",  # default: the config's, else ~/.local/share/stbn/runs/PRESET
                        help="override output_dir (default: see docs/training.md)")  # fmt: skip
    parser.add_argument("--checkpoint", help="also write the final model here")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/state.pt if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace) -> TrainConfig:
    config = load_train_config(args.config) if args.config else TrainConfig()
    changes: dict[str, Any] = {}
    if args.preset:
        changes["preset"] = args.preset
    if args.output_dir:
        changes["output_dir"] = args.output_dir
    if args.checkpoint:
        changes["checkpoint"] = args.checkpoint
    if args.threads is not None:
        changes["threads"] = args.threads
    optim: dict[str, Any] = {}
    if args.iterations is not None:
        optim["iterations"] = args.iterations
    if args.time_limit_minutes is not None:
        optim["time_limit_minutes"] = args.time_limit_minutes
    if optim:
        changes["optim"] = dataclasses.replace(config.optim, **optim)  # validates itself (ConfigError)
    return config.replace(**changes) if changes else config


def run(args: argparse.Namespace) -> int:
    from stbn.training.run import train, train_on_video

    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"stbn train: {exc}")
        return 2
    if args.video:
        summary = train_on_video(args.video, config, args.sigma, args.max_frames, args.resume, not args.no_progress)
    else:
        if not args.config:
            print("stbn train: give --config or --video")
            return 2
        summary = train(config, args.resume, not args.no_progress)
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stbn-train", description="STBN self-supervised training")
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
