"""The ``stbn`` console script and ``run_pipeline.py``: the single-process commands of the layers below
(pipeline.cli, stbn.cli) with ``--cluster`` added to ``run`` and ``denoise``. Ray is imported only
when a cluster is asked for."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline import cli as pipeline_cli
from pipeline import run as pipeline_run

CLUSTER_HELP = (
    "run on Ray: local (a Ray instance started for this run), auto (the cluster this machine belongs to), "
    "HOST:PORT (a cluster's head) or ray://HOST:PORT (Ray Client)"
)


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = pipeline_cli.add_run_parser(subparsers)
    add_run_cluster_argument(parser)
    parser.set_defaults(func=run_live)
    return parser


def add_run_cluster_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster", metavar="ADDRESS",
        help=f"{CLUSTER_HELP}; every stream in its own actor (cluster.* in the config)",
    )  # fmt: skip


def run_live(args: argparse.Namespace, prog: str = "stbn run") -> int:
    if args.cluster:
        args.overrides = [*args.overrides, f"cluster.address={args.cluster}"]
    config = pipeline_run.configure(args, prog)
    if config is None:
        return 2
    if not config.cluster.enabled:
        return pipeline_run.run_config(config, prog)
    from cluster.streams import run_streams

    return run_streams(config, prog)


def add_denoise_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = pipeline_cli.add_denoise_parser(subparsers)
    parser.add_argument(
        "--cluster", metavar="ADDRESS",
        help=f"{CLUSTER_HELP}; INPUT is then a folder of videos or a text file listing them (one per line) "
        "and OUTPUT a folder: one task per video, finished outputs skipped",
    )  # fmt: skip
    parser.set_defaults(func=run_denoise)
    return parser


def run_denoise(args: argparse.Namespace) -> int:
    if not args.cluster:
        return pipeline_cli.run_denoise(args)
    from cluster.batch import run_batch

    return run_batch(args)


def main(argv: list[str] | None = None) -> int:
    from stbn.cli import main as stbn_main

    return stbn_main(argv, extra_commands=(add_run_parser, add_denoise_parser, *pipeline_cli.TOOL_COMMANDS))


def run_pipeline_main(argv: list[str] | None = None) -> int:
    """``python run_pipeline.py``: the same as ``stbn run``."""
    parser = argparse.ArgumentParser(prog="run_pipeline", description="Real-time STBN video denoising pipeline")
    pipeline_run.add_arguments(parser)
    add_run_cluster_argument(parser)
    return run_live(parser.parse_args(argv), "run_pipeline")


if __name__ == "__main__":
    sys.exit(main())
