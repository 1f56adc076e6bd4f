"""Fit the level that the model is given on camera noise, from the frame's multi-scale noise levels.

On correlated (camera) noise the streaming loop denoises the four 2x2 phases (stbn.phases); the
level the model does best with there is neither the full-resolution Immerkaer estimate (a third
to a fifth of the noise) nor the noise's standard deviation (the codec removes part of it, and the
phases keep part of its correlation). This script draws camera clips from the simulator
(stbn.camera, random cameras and codecs) over synthetic-motion clips of the *training* photos,
sweeps the level given to the checkpoint on the live path (phase tiling, streaming L=2, uint8 in
and out), and fits log(level) as a linear function of log full and log area2 of
stbn.noise_estimation.ScaleLevels, minimising the PSNR lost against each clip's best level. It
prints CAMERA_LEVEL (every clip) and CAMERA_LEVEL_RAW (the uncompressed clips) and what they lose
on clips left out of the fit. The shipped coefficients (2026-12-02, weights/stbn-cpu-rt.pt) came
from 160 clips swept over 10 levels and both layouts plus 80 more over 8 levels, phases only
(docs/eval/camera-level-sweep.json; refits move them in the second decimal):

    OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_camera_level.py --clips 160 --frames 8 --full-frame --json sweep.json
    OMP_NUM_THREADS=1 .venv/bin/python scripts/fit_camera_level.py --frames 8 --refit docs/eval/camera-level-sweep.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import stbn
from stbn.camera import CameraModel
from stbn.evaluation.metrics import psnr
from stbn.evaluation.protocol import stbn_streaming
from stbn.noise_estimation import CORRELATED_ABOVE, NoiseConfig, NoiseMode, scale_levels
from stbn.phases import PhaseTiling
from stbn.training.motion import synthetic_clip
from stbn.training.photos import TRAIN_PHOTOS, WALLPAPER_TRAIN_PHOTOS, load_photos

MULTIPLIERS = (0.125, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8)  # of the clip's 2x2-averaged level


def tiled_streaming(model: stbn.STBN, noisy: np.ndarray, level: float, lookahead: int) -> np.ndarray:
    """The live path on correlated noise: phases tiled, streamed at a fixed level, untiled."""
    tiling = PhaseTiling(*noisy.shape[1:3])
    tiled = tiling.tile(noisy).astype(np.float32) / 255.0
    out = stbn_streaming(model, tiled, level, lookahead, NoiseConfig(mode=NoiseMode.FIXED, sigma=level))
    return tiling.untile(out)


def camera_clip(
    photos: list[np.ndarray], args: argparse.Namespace, k: int
) -> tuple[np.ndarray, np.ndarray, CameraModel]:
    """Clip ``k`` of the sweep (the same for the same seed): noisy uint8, reference, camera."""
    rng = np.random.default_rng([args.seed, k])
    camera = CameraModel.sample(rng)
    clean = synthetic_clip(photos, args.frames, tuple(args.size), rng).frames
    clean = clean * (rng.uniform(0.25, 1.0) if rng.random() < 0.3 else 1.0)  # dark scenes too
    return camera.simulate(clean, rng), camera.reference(clean), camera


def best_level(levels: np.ndarray, scores: np.ndarray) -> float:
    """Peak of a parabola through the best score and its neighbours in log(level)."""
    i = int(np.argmax(scores))
    if i == 0 or i == len(levels) - 1:
        return float(levels[i])
    x = np.log(levels[i - 1 : i + 2])
    a, b, _ = np.polyfit(x, scores[i - 1 : i + 2], 2)
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[2]))) if a < 0 else float(levels[i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] / "weights/stbn-cpu-rt.pt"))
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 192))
    parser.add_argument("--lookahead", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the per-clip sweep here")
    parser.add_argument("--full-frame", action="store_true", help="also sweep the full frame (for comparison)")
    parser.add_argument("--refit", help="a sweep's JSON: recompute the levels of its (regenerated) clips and fit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    photos = load_photos(TRAIN_PHOTOS + WALLPAPER_TRAIN_PHOTOS)
    if args.refit:
        rows = json.loads(Path(args.refit).read_text())
        for k, row in enumerate(rows):
            noisy, _, _ = camera_clip(photos, args, k)
            row["features"] = np.median([scale_levels(f).as_array() for f in noisy], axis=0).tolist()
        fit(rows)
        return
    model = stbn.load_checkpoint(args.checkpoint).model.eval()
    rows = []
    start = time.time()
    for k in range(args.clips):
        noisy, ref, camera = camera_clip(photos, args, k)
        feats = np.median([scale_levels(f).as_array() for f in noisy], axis=0)
        levels = feats[2] * np.array(MULTIPLIERS)  # around the 2x2-averaged level
        scores, scores_full = [], []
        for level in levels:
            level = float(np.clip(level, 0.5, 254.0))
            out = tiled_streaming(model, noisy, level, args.lookahead)
            scores.append(float(np.mean([psnr(out[i], ref[i]) for i in range(len(ref))])))
            if args.full_frame:
                out = stbn_streaming(model, noisy.astype(np.float32) / 255.0, level, args.lookahead)
                scores_full.append(float(np.mean([psnr(out[i], ref[i]) for i in range(len(ref))])))
        scores = np.array(scores)
        best = best_level(levels, scores)
        rows.append({"camera": camera.label(), "features": feats.tolist(), "levels": levels.tolist(),
                     "scores": scores.tolist(), "best": best,
                     "input": float(np.mean([psnr(noisy[i] / 255.0, ref[i]) for i in range(len(ref))]))})  # fmt: skip
        if scores_full:
            rows[-1]["scores_full"] = scores_full
        seconds = time.time() - start
        print(f"{k:3d} {camera.label():60s} levels {np.round(feats, 1)} best {best:5.1f} "
              f"({scores.max():.2f} dB, input {rows[-1]['input']:.2f}) {seconds:.0f} s", flush=True)  # fmt: skip
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(rows, indent=1))
    fit(rows)


def _score_at(row: dict, level: float, key: str = "scores") -> float:
    """The clip's PSNR at ``level``: interpolated in log(level), extended linearly past the sweep."""
    x, y = np.log(row["levels"]), np.array(row[key])
    t = np.log(max(level, 1e-3))
    if t < x[0]:
        return float(y[0] + (t - x[0]) * (y[1] - y[0]) / (x[1] - x[0]))
    if t > x[-1]:
        return float(y[-1] + (t - x[-1]) * (y[-1] - y[-2]) / (x[-1] - x[-2]))
    return float(np.interp(t, x, y))


def _design(rows: list[dict]) -> np.ndarray:
    """[1, log full, log area2] of each clip's ScaleLevels (stbn.noise_estimation.camera_level)."""
    levels = np.maximum(np.array([r["features"] for r in rows]), 0.05)
    return np.stack([np.ones(len(rows)), np.log(levels[:, 0]), np.log(levels[:, 2])], axis=1)


def _lost(coef: np.ndarray, rows: list[dict], key: str) -> np.ndarray:
    """PSNR lost at the fitted level against the clip's best level in the same layout."""
    levels = np.exp(_design(rows) @ coef)
    return np.array([max(r[key]) - _score_at(r, v, key) for r, v in zip(rows, levels)])


def _fit_level(rows: list[dict], key: str) -> np.ndarray:
    """The coefficients minimising the mean PSNR lost (least squares on log(best level) as the start)."""
    from scipy.optimize import minimize

    best = np.log([r["levels"][int(np.argmax(r[key]))] for r in rows])
    start, *_ = np.linalg.lstsq(_design(rows), best, rcond=None)
    return minimize(lambda c: _lost(c, rows, key).mean() + 0.01 * np.sum(c[1:] ** 2), start, method="Powell",
                    options={"maxiter": 20000, "xtol": 1e-4, "ftol": 1e-6}).x  # fmt: skip


def _summary(loss: np.ndarray) -> str:
    return f"mean {loss.mean():.2f} dB, 90th percentile {np.quantile(loss, 0.9):.2f}, max {loss.max():.2f}"


def fit(rows: list[dict]) -> None:
    """On the clips the live path takes as correlated (ScaleLevels.correlation above
    CORRELATED_ABOVE): fitted on 3 of 4 clips and reported on the 4th, then refitted on all. With a
    full-frame sweep (--full-frame), the same for the full frame, for comparison."""
    rows = [r for r in rows if r["features"][1] / max(r["features"][0], 1e-3) > CORRELATED_ABOVE]
    held = np.arange(len(rows)) % 4 == 3
    fit_rows = [r for r, h in zip(rows, held) if not h]
    test_rows = [r for r, h in zip(rows, held) if h]
    print(f"{len(rows)} clips measured as correlated, {len(test_rows)} held out")
    for key, name in (("scores", "phases"), ("scores_full", "full frame")):
        swept = [[r for r in part if key in r] for part in (fit_rows, test_rows)]
        if swept[1]:
            coef = _fit_level(swept[0], key)
            lost = _summary(_lost(coef, swept[1], key)) + f" ({len(swept[1])} clips)"
            print(f"  {name}: PSNR lost against the clip's best level, held out: {lost}")
    # sources that say their frames are uncompressed (a raw camera): the no-codec clips alone
    raw = [[r for r in part if _codec(r) == "none"] for part in (fit_rows, test_rows)]
    lost_raw = _summary(_lost(_fit_level(raw[0], "scores"), raw[1], "scores"))
    lost_all = _summary(_lost(_fit_level(fit_rows, "scores"), raw[1], "scores"))
    print(f"  uncompressed clips ({len(raw[1])} held out): their own fit {lost_raw}; the fit on every clip {lost_all}")
    for name, part in (("CAMERA_LEVEL", rows), ("CAMERA_LEVEL_RAW", [r for r in rows if _codec(r) == "none"])):
        final = _fit_level(part, "scores")
        print(f"{name} = (" + ", ".join(f"{c:.2f}" for c in final) + ")  # intercept, log full, log area2")


def _codec(row: dict) -> str:
    return next((c for c in ("h264", "hevc", "jpeg") if c in row["camera"]), "none")


if __name__ == "__main__":
    main()
