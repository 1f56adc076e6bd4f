"""``stbn eval``: STBN (offline and streaming) against baselines under the reference protocol.

stbn eval --checkpoint weights/stbn-cpu-rt.pt --dataset groups --dataset bikes --json out.json
stbn eval --checkpoint ... --video clean.mp4 --sigmas 20 30
stbn eval --checkpoint ... --frames clean_frames/ --methods noisy,stbn,hqdn3d
stbn eval --checkpoint ... --dataset groups --cameras all --sigmas   # camera noise only
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stbn.camera import camera_grid
from stbn.evaluation import datasets
from stbn.evaluation.datasets import GROUP_NAMES
from stbn.evaluation.protocol import (
    METHODS,
    SIGMAS,
    Dataset,
    EvalSettings,
    Evaluator,
    markdown_table,
    method_rows,
    results_json,
    summary_tables,
)
from stbn.noise_estimation import Compression, Correlation, NoiseConfig
from stbn.weights import WeightsNotFound, resolve_camera_checkpoint, resolve_checkpoint


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint against baselines (PSNR/SSIM, time/frame)")
    configure_parser(parser)
    parser.set_defaults(func=run)
    return parser


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HxW, got {text!r}") from exc
    return h, w


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="", help="STBN checkpoint (default: the shipped CPU model)")
    parser.add_argument(
        "--camera-checkpoint", default="", metavar="PATH|none",
        help="stbn-live's model for correlated (camera) noise; default: the one shipped for the checkpoint's "
        "preset, none: the main model on the 2x2 pixel phases",
    )  # fmt: skip
    parser.add_argument(
        "--dataset",
        action="append",
        choices=["groups", *GROUP_NAMES, "bikes", "synthetic"],
        default=[],
        help="built-in set (repeatable): 'groups' = every content group (smooth, texture, static, fast, dark: "
        "synthetic motion over Debian wallpapers), one group by name, bikes.mp4 frames 30-59, or synthetic "
        "clips from the held-out scikit-image photos",
    )
    parser.add_argument("--group-frames", type=int, default=12, help="frames per content-group clip")
    parser.add_argument("--group-size", type=_size, default=(256, 384), help="HxW of content-group clips")
    parser.add_argument("--video", action="append", default=[], help="a clean video file (noise is added)")
    parser.add_argument("--frames", action="append", default=[], help="a folder of clean frames (noise is added)")
    parser.add_argument("--max-frames", type=int, default=30, help="frames scored per video/folder/bikes")
    parser.add_argument("--synthetic-frames", type=int, default=20, help="frames per synthetic clip")
    parser.add_argument("--crop", type=_size, help="centre crop HxW of real clips")
    parser.add_argument("--sigmas", type=float, nargs="*", default=list(SIGMAS), help="AWGN levels, 0..255")
    names = [c.name for c in camera_grid()]
    parser.add_argument(
        "--cameras", default="", help=f"simulated camera noise (stbn.camera), comma list from {','.join(names)}, "
        "or 'all'; scored against the camera's noiseless output",
    )  # fmt: skip
    parser.add_argument(
        "--live-correlation", choices=[c.value for c in Correlation], default=Correlation.AUTO.value,
        help="stbn-live: the live default's noise.correlation (white: as before camera noise was measured)",
    )  # fmt: skip
    parser.add_argument(
        "--live-compression", choices=["source", *(c.value for c in Compression)], default="source",
        help="stbn-live: what the source says of its encoding (noise.compression; none: a raw camera); "
        "source (default): what a file or stream of each setting says (lossy for the codec settings)",
    )  # fmt: skip
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list from {','.join(METHODS)}")
    parser.add_argument("--lookaheads", type=int, nargs="+", default=[0, 2], help="look-aheads L of the streaming rows")
    parser.add_argument("--bm3d-frames", default="6", help="frame indices scored for BM3D (slow)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed per sequence (reference: 0)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads")
    parser.add_argument("--no-ssim", action="store_true", help="PSNR only")
    parser.add_argument("--cache-dir", help="reuse baseline results from this folder")
    parser.add_argument("--json", help="write all results (per frame) to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no per-sequence progress lines")


def run(args: argparse.Namespace) -> int:
    import stbn

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    grid = {c.name: c for c in camera_grid()}
    wanted = list(grid) if args.cameras.strip() == "all" else [c.strip() for c in args.cameras.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in grid]
    if unknown or not (wanted or args.sigmas):
        problem = f"unknown camera settings {unknown}; choose from {list(grid)} or all" if unknown else "no noise"
        print(f"stbn eval: {problem} (give --sigmas and/or --cameras)", file=sys.stderr)
        return 2
    from_source = args.live_compression == "source"
    try:
        settings = EvalSettings(
            sigmas=tuple(args.sigmas),
            cameras=tuple(grid[c] for c in wanted),
            live_noise=NoiseConfig(
                correlation=Correlation(args.live_correlation),
                compression=Compression.UNKNOWN if from_source else Compression(args.live_compression),
            ),
            live_compression_from_source=from_source,
            methods=methods,
            seed=args.seed,
            lookaheads=tuple(args.lookaheads),
            bm3d_frames=tuple(int(v) for v in args.bm3d_frames.split(",") if v.strip()),
            threads=args.threads,
            ssim=not args.no_ssim,
            cache_dir=args.cache_dir,
        )
    except ValueError as exc:
        print(f"stbn eval: {exc}", file=sys.stderr)
        return 2
    model = camera_model = None
    header = []
    if any(m.needs_model for m in settings.methods):
        try:
            args.checkpoint = str(resolve_checkpoint(args.checkpoint))
            loaded = stbn.load_checkpoint(args.checkpoint)
            camera_path = resolve_camera_checkpoint(args.camera_checkpoint, loaded.preset)
            camera_model = stbn.load_checkpoint(camera_path).model.eval() if camera_path is not None else None
        except (stbn.CheckpointError, WeightsNotFound) as exc:
            print(f"stbn eval: {exc}", file=sys.stderr)
            return 2
        if camera_path is not None:
            header.append(f"camera model (stbn-live on correlated noise): {camera_path}")
        model = loaded.model.eval()
        meta = loaded.metadata
        header.append(
            f"checkpoint {args.checkpoint}: preset {loaded.preset}, {sum(p.numel() for p in model.parameters()):,} "
            f"parameters, {meta.get('iteration', '?')} iterations, noise {loaded.noise.kind.value} "
            f"{tuple(loaded.noise.sigma_range)}"
        )
    named: dict[str, Callable[[], list[Dataset]]] = {
        "bikes": lambda: [datasets.bikes(args.max_frames, args.crop)],
        "synthetic": lambda: [datasets.synthetic(args.synthetic_frames)],
        "groups": lambda: [datasets.content_group(g, args.group_frames, args.group_size) for g in GROUP_NAMES],
        **{g: (lambda g=g: [datasets.content_group(g, args.group_frames, args.group_size)]) for g in GROUP_NAMES},
    }
    sets = [dataset for name in args.dataset for dataset in named[name]()]
    sets += [datasets.from_path(p, args.max_frames, args.crop) for p in args.video + args.frames]
    if not sets:
        print("stbn eval: give --dataset, --video or --frames", file=sys.stderr)
        return 2
    log = (lambda _msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    evaluator = Evaluator(settings, model, log, camera_model)
    report: dict[str, Any] = {"checkpoint": args.checkpoint if model is not None else None, "settings": vars(args),
                              "datasets": []}  # fmt: skip
    rows = method_rows(settings.methods, settings.lookaheads)
    tables = header[:]
    evaluated = []
    for dataset in sets:
        results = evaluator.evaluate(dataset)
        evaluated.append((dataset, results))
        tables.append(markdown_table(dataset, results, rows))
        report["datasets"].append(results_json(dataset, results))
    if len(evaluated) > 1:
        tables.append(summary_tables(evaluated, rows))
    print("\n\n".join(tables))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stbn-eval", description=__doc__.splitlines()[0])
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
