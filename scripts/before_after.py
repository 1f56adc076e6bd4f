"""Before/after picture for the README and the model card, from the evaluation's content groups.

Rows: a smooth and a textured clip at sigma 25 (frame 6, a centre crop shown at 2x); columns:
noisy | the checkpoint (streaming, L=0, as the live pipeline runs it) | its offline posterior |
multi-frame NL-means (strength tuned on the group's tuning clip) | per-frame BM3D. PSNR of the
crop's whole frame in each caption.

With ``--camera iso-high`` (a setting of stbn.camera.camera_grid) the noise is a simulated camera's
and the columns are: noisy | the main model on the 2x2 phases (the live default before the camera
model; blind) | the live default (blind: correlated noise measured, the shipped camera model; told
what a file or stream of the camera says of its encoding, so a codec setting's chroma is finished) |
NL-means | BM3D (oracle level) | what the camera shows of the noiseless scene (the reference), all
at L=2.

    .venv/bin/python scripts/before_after.py --checkpoint weights/stbn-cpu-rt.pt --out docs/images/before-after.png
    .venv/bin/python scripts/before_after.py --camera iso-high --out docs/images/camera-before-after.png
    .venv/bin/python scripts/before_after.py --camera iso-high-h264 --out docs/images/camera-before-after-h264.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import stbn
from stbn.camera import camera_grid
from stbn.evaluation import baselines, datasets
from stbn.evaluation.metrics import psnr, to_uint8
from stbn.evaluation.noise import Camera, add_noise
from stbn.evaluation.protocol import EvalSettings, Evaluator, stbn_offline, stbn_streaming
from stbn.noise_estimation import NoiseConfig
from stbn.weights import SHIPPED_PRESET, resolve_camera_checkpoint

FRAME = 6
CROP = (96, 128)  # (H, W) of the centre crop, shown at 2x
LABEL_HEIGHT = 22
ROOT = Path(__file__).resolve().parents[1]  # defaults are the repository's, from any working directory


def _panel(image: np.ndarray, clean: np.ndarray | None, label: str) -> np.ndarray:
    """A labelled 2x crop; the label carries the whole frame's PSNR against ``clean`` when given."""
    h, w = image.shape[:2]
    y0, x0 = (h - CROP[0]) // 2, (w - CROP[1]) // 2
    crop = to_uint8(image[y0 : y0 + CROP[0], x0 : x0 + CROP[1]])
    crop = cv2.resize(crop, (2 * CROP[1], 2 * CROP[0]), interpolation=cv2.INTER_NEAREST)
    bar = np.full((LABEL_HEIGHT, crop.shape[1], 3), 255, np.uint8)
    text = label if clean is None else f"{label} {psnr(image, clean):.2f} dB"
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, crop], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "weights/stbn-cpu-rt.pt"))
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--groups", nargs="+", default=["smooth", "texture"])
    parser.add_argument("--cache-dir", default=str(ROOT / "runs/eval-cache"),
                        help="baseline strengths cached by stbn eval")  # fmt: skip
    parser.add_argument("--camera", choices=[c.name for c in camera_grid()], help="a simulated camera's noise")
    parser.add_argument("--out", default=str(ROOT / "docs/images/before-after.png"))
    args = parser.parse_args()

    model = stbn.load_checkpoint(args.checkpoint).model.eval()
    evaluator = Evaluator(EvalSettings(cache_dir=args.cache_dir), model, log=lambda _m: None)
    rows = []
    for name in args.groups:
        if args.camera:
            rows.append(_camera_row(model, evaluator, name, args.camera))
            continue
        dataset = datasets.content_group(name)
        clean = dataset.sequences[0].clean
        noisy = add_noise(clean, args.sigma)
        live = stbn_streaming(model, to_uint8(noisy).astype(np.float32) / 255.0, args.sigma, lookahead=0)
        offline, _ = stbn_offline(model, noisy, args.sigma)
        factor = evaluator.tuned_strength(dataset, "nlm", args.sigma)
        nlm = baselines.nlm_video(noisy, factor * args.sigma)
        bm3d = baselines.bm3d_frames(noisy, args.sigma, [FRAME])[FRAME]
        ref = clean[FRAME]
        panels = [
            _panel(np.clip(noisy[FRAME], 0, 1), ref, "noisy"),
            _panel(live[FRAME], ref, "STBN L=0"),
            _panel(offline[FRAME], ref, "STBN offline"),
            _panel(nlm[FRAME], ref, "NL-means"),
            _panel(bm3d, ref, "BM3D"),
            _panel(ref, None, f"clean ({dataset.sequences[0].name})"),
        ]
        rows.append(np.concatenate(panels, axis=1))
    _write(rows, Path(args.out))


def _camera_row(model: stbn.STBN, evaluator: Evaluator, group: str, setting: str) -> np.ndarray:
    dataset = datasets.content_group(group)
    noise = Camera({c.name: c for c in camera_grid()}[setting])
    given = noise.apply(dataset.sequences[0].clean, 0)
    camera_model = stbn.load_checkpoint(resolve_camera_checkpoint("", SHIPPED_PRESET)).model.eval()
    phases = stbn_streaming(model, given.noisy, 0.0, 2, NoiseConfig())
    # as the live path: told what a file or stream of this camera says of its encoding
    live = stbn_streaming(model, given.noisy, 0.0, 2, NoiseConfig(compression=noise.source_compression), camera_model)
    factor = evaluator.tuned_strength(dataset, "nlm", noise)
    nlm = baselines.nlm_video(given.noisy, factor * given.level)
    bm3d = baselines.bm3d_frames(given.noisy, given.level, [FRAME])[FRAME]
    ref = given.reference[FRAME]
    panels = [
        _panel(given.noisy[FRAME], ref, "noisy"),
        _panel(phases[FRAME], ref, "STBN phases"),
        _panel(live[FRAME], ref, "STBN camera model"),
        _panel(nlm[FRAME], ref, "NL-means"),
        _panel(bm3d, ref, "BM3D"),
        _panel(ref, None, f"reference ({setting})"),
    ]
    return np.concatenate(panels, axis=1)


def _write(rows: list[np.ndarray], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
