"""Evaluation runs: sequences, seeded noise, STBN (offline and streaming) and baselines in one table.

Protocol (STBN-REFERENCE section 6): clean frames as float in [0, 1]; AWGN added in float, not
clipped, with the CPU generator seeded with ``seed`` (0) before each sequence, drawn in (N, 3, H, W)
layout like ``torch.manual_seed(0); torch.randn_like(seq)``; the posterior mean is clamped to [0, 1];
PSNR/SSIM per frame -> per sequence -> mean over sequences (metrics.py).

Streaming mode feeds uint8 frames (the noisy input clipped and rounded, as a camera would deliver)
through stbn.streaming.StreamingDenoiser with look-ahead L and the true sigma as a fixed noise
level; offline mode runs the whole clip at once on float input. "stbn-live" runs the live default
(blind estimate, white or correlated noise measured per stream); "stbn-best" the same path at the
best fixed level of a sweep scored against the reference: the upper bound of what an estimate reaches.

Noise settings (stbn.evaluation.noise): AWGN at sigma, or a simulated camera (stbn.camera) at an
ISO-like gain with or without H.264, scored against what the camera shows of the noiseless scene.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stbn.camera import CameraCondition
from stbn.evaluation import baselines
from stbn.evaluation.metrics import mean, psnr, sequence_scores, to_uint8
from stbn.evaluation.noise import Awgn, Camera, NoiseSetting, Noisy
from stbn.model import STBN, sigma_tensor
from stbn.noise_estimation import Correlation, NoiseConfig, NoiseMode
from stbn.posterior import posterior_mean

SIGMAS = (10.0, 20.0, 30.0, 40.0, 50.0)
BEST_LEVEL_FACTORS = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0)  # stbn-best: levels swept, factors of the true/oracle level


class Method(str, enum.Enum):
    """What an evaluation scores (``stbn eval --methods``)."""

    NOISY = "noisy"
    GAUSS = "gauss"
    HQDN3D = "hqdn3d"
    NLM = "nlm"
    BM3D = "bm3d"
    STBN = "stbn"  # offline, whole clip; adds its prior mean as a row
    STBN_STREAM = "stbn-stream"  # the streaming loop at the true/oracle level, a row per look-ahead
    STBN_LIVE = "stbn-live"  # the live default (blind), a row per look-ahead
    STBN_BEST = "stbn-best"  # the streaming loop at its best fixed level (an oracle sweep)

    @property
    def needs_model(self) -> bool:
        return self in _STBN_METHODS

    @property
    def tuned(self) -> bool:
        """A baseline whose strength is tuned per dataset and noise on a clip that is not scored."""
        return self in (Method.GAUSS, Method.HQDN3D, Method.NLM)

    def rows(self, lookaheads: Sequence[int]) -> list[str]:
        """The table rows this method fills."""
        if self is Method.STBN:
            return ["stbn", "stbn-prior"]
        if self is Method.STBN_STREAM:
            return [f"stbn-L{la}" for la in lookaheads]
        if self is Method.STBN_LIVE:
            return [f"stbn-live-L{la}" for la in lookaheads]
        if self is Method.STBN_BEST:
            return [f"stbn-best-L{max(lookaheads)}"]
        return [self.value]


_STBN_METHODS = frozenset({Method.STBN, Method.STBN_STREAM, Method.STBN_LIVE, Method.STBN_BEST})
METHODS = tuple(m.value for m in Method)
TUNED_ROWS = frozenset(m.value for m in Method if m.tuned)  # rows whose note is a tuned strength


def method_rows(methods: Sequence[Method], lookaheads: Sequence[int]) -> list[str]:
    """Table rows of ``methods``: "stbn" adds its prior mean ("stbn-prior"), "stbn-stream" one row
    per look-ahead ("stbn-L0", "stbn-L2", ...)."""
    return [row for m in methods for row in Method(m).rows(lookaheads)]


@dataclass(frozen=True)
class Clip:
    name: str
    clean: np.ndarray  # (N, H, W, 3) float32 in [0, 1]


@dataclass(frozen=True)
class Dataset:
    name: str
    sequences: tuple[Clip, ...]
    tuning: Clip | None = None  # for baseline strengths; never scored
    description: str = ""


@dataclass(frozen=True)
class EvalSettings:
    sigmas: tuple[float, ...] = SIGMAS
    cameras: tuple[CameraCondition, ...] = ()  # camera settings scored after the AWGN ones
    methods: tuple[Method, ...] = tuple(Method)
    seed: int = 0
    lookaheads: tuple[int, ...] = (0, 2)
    bm3d_frames: tuple[int, ...] = (5, 15, 25)  # indices scored for BM3D (per sequence, those that exist)
    threads: int = 0  # torch and OpenCV threads; 0 = the libraries' defaults
    ssim: bool = True
    cache_dir: str | None = None  # baseline results are cached here (they do not depend on the model)
    live_noise: NoiseConfig = field(default_factory=NoiseConfig)  # stbn-live: the live default's noise settings
    # stbn-live is told what a source of each setting says of its encoding (lossy for the codec
    # settings, as the pipeline says of a file or an RTSP stream) instead of live_noise.compression
    live_compression_from_source: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(str(m) for m in self.methods if m not in METHODS)
        if unknown:
            raise ValueError(f"unknown evaluation methods {unknown}; choose from {METHODS}")
        object.__setattr__(self, "methods", tuple(Method(m) for m in self.methods))

    @property
    def noises(self) -> tuple[NoiseSetting, ...]:
        return tuple(Awgn(s) for s in self.sigmas) + tuple(Camera(c) for c in self.cameras)


@dataclass
class MethodResult:
    """Per-sequence per-frame scores of one method at one sigma, and its time per frame."""

    psnr: dict[str, list[float]] = field(default_factory=dict)
    ssim: dict[str, list[float]] = field(default_factory=dict)
    frames: dict[str, list[int]] = field(default_factory=dict)
    seconds: float = 0.0
    n_frames: int = 0
    note: str = ""

    def mean_psnr(self) -> float:
        return mean([mean(v) for v in self.psnr.values()])

    def mean_ssim(self) -> float:
        return mean([mean(v) for v in self.ssim.values()]) if self.ssim else float("nan")

    def ms_per_frame(self) -> float:
        return 1000.0 * self.seconds / max(self.n_frames, 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {
            "mean_psnr": self.mean_psnr(),
            "mean_ssim": self.mean_ssim(),
            "ms_per_frame": self.ms_per_frame(),
        }


Results = dict[NoiseSetting, dict[str, MethodResult]]  # per noise setting, per table row
# (table row, estimate (N, H, W, 3) or {frame: estimate}, seconds, frames processed, note)
Row = tuple[str, np.ndarray | dict[int, np.ndarray], float, int, str]


# --- STBN --------------------------------------------------------------------------------------------


@torch.no_grad()
def stbn_offline(model: STBN, noisy: np.ndarray, sigma255: float, chunk: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Whole-clip bidirectional inference on float input (``chunk`` > 0 splits long clips), on the
    model's device.

    Returns the posterior mean and the prior mean (clipped), both (N, H, W, 3).
    """
    model.eval()
    device = next(model.parameters()).device
    clip = torch.from_numpy(np.ascontiguousarray(noisy)).permute(0, 3, 1, 2).unsqueeze(0).to(device)
    n = clip.shape[1]
    step = chunk or n
    sigma = sigma255 / 255.0
    posts, means = [], []
    for s in range(0, n, step):
        part = clip[:, s : s + step]
        prior = model.prior(part, sigma)
        if model.config.blind_spot:
            posts.append(posterior_mean(prior, part, sigma_tensor(sigma, part)))
        else:  # a student's output is its estimate
            posts.append(prior.clamp(0.0, 1.0))
        means.append(prior[:, :, :3].clamp(0.0, 1.0))
    as_frames = lambda parts: torch.cat(parts, dim=1)[0].permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
    return as_frames(posts), as_frames(means)


def stbn_streaming(
    model: STBN,
    noisy: np.ndarray,
    sigma255: float,
    lookahead: int,
    noise: NoiseConfig | None = None,
    camera_model: STBN | None = None,
) -> np.ndarray:
    """Frame-by-frame uint8 inference through the live pipeline's streaming loop, on the fp32
    reference runner (the model's device); ``noise`` defaults to the true sigma, clipping bias
    removed; ``camera_model`` denoises what the loop finds correlated (as the live path's)."""
    from stbn.step import EagerRunner
    from stbn.streaming import StreamingDenoiser

    noise = noise or NoiseConfig(mode=NoiseMode.FIXED, sigma=sigma255)
    camera = EagerRunner(camera_model) if camera_model is not None else None
    denoiser = StreamingDenoiser(EagerRunner(model), lookahead, noise, camera)
    out = [ready.image for ready in denoiser.stream(to_uint8(noisy))]
    return np.stack(out).astype(np.float32) / 255.0


# --- the run -----------------------------------------------------------------------------------------


def stbn_best_level(
    model: STBN, noisy: Noisy, lookahead: int, correlated: bool
) -> tuple[np.ndarray, float]:
    """The streaming output at the level (of :data:`BEST_LEVEL_FACTORS` x the true/oracle level)
    that scores best against the reference, and that level: an oracle, the bound for an estimate."""
    layout = Correlation.CORRELATED if correlated else Correlation.WHITE
    best_score, best, best_level = -np.inf, noisy.noisy, noisy.level
    for factor in BEST_LEVEL_FACTORS:  # only the best output is kept (a clip's worth of memory)
        level = float(np.clip(noisy.level * factor, 0.5, 255.0))
        fixed = NoiseConfig(NoiseMode.FIXED, level, correlation=layout)
        est = stbn_streaming(model, noisy.noisy, level, lookahead, fixed)
        score = mean([psnr(est[i], noisy.reference[i]) for i in range(len(est))])
        if score > best_score:
            best_score, best, best_level = score, est, level
    return best, best_level


def _cache_key(dataset: str, seq: Clip, noise: NoiseSetting, method: str, extra: Any) -> str:
    h = hashlib.sha1()
    h.update(f"{dataset}|{seq.name}|{seq.clean.shape}|{noise.label}|{method}|{extra}".encode())
    h.update(np.ascontiguousarray(seq.clean[:, ::7, ::7]).tobytes())
    return h.hexdigest()[:20]


class Evaluator:
    def __init__(
        self,
        settings: EvalSettings,
        model: STBN | None,
        log: Callable[[str], None] = print,
        camera_model: STBN | None = None,
    ) -> None:
        """``camera_model``: what stbn-live hands correlated noise (the live path's camera model)."""
        if model is None and any(m.needs_model for m in settings.methods):
            raise ValueError("STBN methods need a model (--checkpoint)")
        self.settings = settings
        self.model = model
        self.camera_model = camera_model
        self.log = log
        self.tuned: dict[tuple[str, Method, NoiseSetting], float] = {}  # (dataset, method, noise) -> strength

    def _cached(self, key: str) -> dict[str, Any] | None:
        if not self.settings.cache_dir:
            return None
        path = Path(self.settings.cache_dir) / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _store(self, key: str, value: dict[str, Any]) -> None:
        if self.settings.cache_dir:
            path = Path(self.settings.cache_dir) / f"{key}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))

    def tuned_strength(self, dataset: Dataset, method: Method | str, noise: NoiseSetting | float) -> float:
        method = Method(method)
        noise = Awgn(noise) if isinstance(noise, float | int) else noise
        if (dataset.name, method, noise) in self.tuned:
            return self.tuned[dataset.name, method, noise]
        if dataset.tuning is None:
            raise ValueError(f"dataset {dataset.name} has no tuning clip for {method}")
        key = _cache_key(dataset.name, dataset.tuning, noise, f"tune-{method.value}", _TUNABLE[method][1])
        hit = self._cached(key)
        if hit is not None:
            best = hit["best"]
        else:
            tuning = noise.apply(dataset.tuning.clean, self.settings.seed + 1)
            run, candidates = _TUNABLE[method]
            best, scores = baselines.tune_strength(
                lambda y, v: run(y, v, tuning.level), candidates, tuning.noisy, tuning.reference
            )
            self._store(key, {"best": best, "scores": {str(k): v for k, v in scores.items()}})
        self.tuned[dataset.name, method, noise] = best
        return best

    def _run_method(self, dataset: Dataset, given: Noisy, noise: NoiseSetting, method: Method) -> list[Row]:
        """[(row, estimate (N,H,W,3) or {frame: estimate}, seconds, frames processed, note)]."""
        if method.tuned:
            return self._tuned_baseline(dataset, given, noise, method)
        runs: dict[Method, Callable[[Noisy, NoiseSetting], list[Row]]] = {
            Method.NOISY: self._noisy,
            Method.BM3D: self._bm3d,
            Method.STBN: self._stbn_offline,
            Method.STBN_STREAM: self._stbn_stream,
            Method.STBN_LIVE: self._stbn_live,
            Method.STBN_BEST: self._stbn_best,
        }
        return runs[method](given, noise)

    def _noisy(self, given: Noisy, noise: NoiseSetting) -> list[Row]:
        return [("noisy", np.clip(given.noisy, 0.0, 1.0), 0.0, len(given.noisy), "noisy input clipped to [0,1]")]

    def _stbn_offline(self, given: Noisy, noise: NoiseSetting) -> list[Row]:
        t = time.perf_counter()
        post, prior = stbn_offline(self.model, given.noisy, given.level)  # type: ignore[arg-type]
        seconds, n = time.perf_counter() - t, len(given.noisy)
        return [
            ("stbn", post, seconds, n, "offline, whole clip, float input"),
            ("stbn-prior", prior, 0.0, n, "prior mean of the offline run (blind spot, no posterior)"),
        ]

    def _stbn_stream(self, given: Noisy, noise: NoiseSetting) -> list[Row]:
        rows = []
        level_note = "oracle level" if noise.camera else "true sigma"
        for la in self.settings.lookaheads:
            t = time.perf_counter()
            est = stbn_streaming(self.model, given.noisy, given.level, la)  # type: ignore[arg-type]
            note = f"streaming L={la}, uint8 in/out, {level_note}"
            rows.append((f"stbn-L{la}", est, time.perf_counter() - t, len(given.noisy), note))
        return rows

    def _stbn_live(self, given: Noisy, noise: NoiseSetting) -> list[Row]:
        rows = []
        live = self.settings.live_noise
        if self.settings.live_compression_from_source:
            live = dataclasses.replace(live, compression=noise.source_compression)
        for la in self.settings.lookaheads:
            t = time.perf_counter()
            est = stbn_streaming(self.model, given.noisy, given.level, la, live, self.camera_model)  # type: ignore[arg-type]
            camera = "camera model" if self.camera_model is not None else "2x2 phases"
            note = (f"the live default: streaming L={la}, blind, noise correlation "
                    f"{live.correlation.value} ({camera}), compression {live.compression.value}")  # fmt: skip
            rows.append((f"stbn-live-L{la}", est, time.perf_counter() - t, len(given.noisy), note))
        return rows

    def _stbn_best(self, given: Noisy, noise: NoiseSetting) -> list[Row]:
        la = max(self.settings.lookaheads)
        t = time.perf_counter()
        est, level = stbn_best_level(self.model, given, la, noise.camera)  # type: ignore[arg-type]
        layout = "phases" if noise.camera else "full frame"
        note = f"L={la}, {layout}, best fixed level (oracle sweep): {level:.1f}"
        count = len(given.noisy) * len(BEST_LEVEL_FACTORS)
        return [(f"stbn-best-L{la}", est, time.perf_counter() - t, count, note)]

    def _bm3d(self, given: Noisy, noise: NoiseSetting) -> list[Row]:
        frames = [i for i in self.settings.bm3d_frames if i < len(given.noisy)]
        level_note = "oracle level" if noise.camera else "true sigma"
        t = time.perf_counter()
        est = baselines.bm3d_frames(given.noisy, given.level, frames)
        return [("bm3d", est, time.perf_counter() - t, len(frames), f"per-frame, {level_note}, frames {frames}")]

    def _tuned_baseline(self, dataset: Dataset, given: Noisy, noise: NoiseSetting, method: Method) -> list[Row]:
        value = self.tuned_strength(dataset, method, noise)
        run, _ = _TUNABLE[method]
        t = time.perf_counter()
        est = run(given.noisy, value, given.level)
        note = _TUNED_NOTE[method].format(value)
        return [(method.value, est, time.perf_counter() - t, len(given.noisy), note)]

    def evaluate(self, dataset: Dataset) -> Results:
        s = self.settings
        results: Results = {}
        if s.threads:
            import cv2

            torch.set_num_threads(s.threads)
            cv2.setNumThreads(s.threads)  # NL-means runs on OpenCV's own thread pool
        for noise in s.noises:
            per_row = {r: MethodResult() for r in method_rows(s.methods, s.lookaheads)}
            for index, seq in enumerate(dataset.sequences):
                given = noise.apply(seq.clean, s.seed, index)
                for method in s.methods:
                    cacheable = not method.needs_model  # the baselines do not depend on the model
                    # A tuned baseline's result is keyed by the strength it ran with.
                    extra = s.bm3d_frames if method is Method.BM3D else 0
                    if method.tuned:
                        extra = self.tuned_strength(dataset, method, noise)
                    key = _cache_key(dataset.name, seq, noise, method.value, (s.seed, extra))
                    hit = self._cached(key) if cacheable else None
                    if hit is None:
                        runs = self._run_method(dataset, given, noise, method)
                        hit = {row: _scored(est, given.reference, sec, count, note, s.ssim)
                               for row, est, sec, count, note in runs}  # fmt: skip
                        if cacheable:
                            self._store(key, hit)
                    for row, scored in hit.items():
                        res = per_row[row]
                        res.psnr[seq.name] = scored["psnr"]
                        if scored["ssim"]:
                            res.ssim[seq.name] = scored["ssim"]
                        res.frames[seq.name] = scored["frames"]
                        res.seconds += scored["seconds"]
                        res.n_frames += scored["count"]
                        res.note = scored["note"]
                        self.log(f"  {dataset.name} {noise.label} {seq.name} {row}: {mean(scored['psnr']):.2f} dB")
            results[noise] = per_row
        return results


def _scored(
    est: np.ndarray | dict[int, np.ndarray], reference: np.ndarray, seconds: float, count: int, note: str,
    with_ssim: bool,
) -> dict[str, Any]:  # fmt: skip
    if isinstance(est, dict):
        frames = sorted(est)
        full = np.zeros_like(reference)
        for i in frames:
            full[i] = est[i]
        scores = sequence_scores(full, reference, frames, with_ssim)
    else:
        frames = list(range(len(reference)))
        scores = sequence_scores(est, reference, None, with_ssim)
    return {"psnr": scores["psnr"], "ssim": scores.get("ssim", []), "frames": frames, "seconds": seconds,
            "count": count, "note": note}  # fmt: skip


_TUNABLE: dict[Method, tuple[Callable[[np.ndarray, float, float], np.ndarray], tuple[float, ...]]] = {
    Method.GAUSS: (lambda y, v, _sigma: baselines.gaussian_video(y, v), baselines.GAUSSIAN_SIGMAS),
    Method.HQDN3D: (lambda y, v, _sigma: baselines.hqdn3d_video(y, v), baselines.HQDN3D_STRENGTHS),
    Method.NLM: (lambda y, v, sigma: baselines.nlm_video(y, v * sigma), baselines.NLM_FACTORS),
}
_TUNED_NOTE = {Method.GAUSS: "blur {:g} px", Method.HQDN3D: "luma_spatial={:g}", Method.NLM: "window 5, h={:g}*sigma"}


# --- reporting ----------------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    if np.isnan(value):
        return "-"
    if np.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def subset_psnr(result: MethodResult, subset: dict[str, list[int]]) -> float:
    """Mean PSNR of a method restricted to the frames in ``subset`` (per sequence)."""
    per_seq = []
    for name, frames in subset.items():
        if name not in result.psnr:
            continue
        lookup = dict(zip(result.frames[name], result.psnr[name], strict=True))
        vals = [lookup[i] for i in frames if i in lookup]
        if vals:
            per_seq.append(mean(vals))
    return mean(per_seq)


def markdown_table(dataset: Dataset, results: Results, methods: Sequence[str]) -> str:
    """One dataset: PSNR/SSIM per noise setting for every row (``methods`` are row names, method_rows)."""
    sigmas = list(results)
    head = "| method | " + " | ".join(s.label for s in sigmas) + " | ms/frame | notes |"
    lines = [f"**{dataset.name}** — {dataset.description}", "", "PSNR (dB) / SSIM", "", head,
             "|---|" + "---:|" * len(sigmas) + "---:|---|"]  # fmt: skip
    for m in methods:
        cells = [f"{_fmt(results[s][m].mean_psnr())} / {_fmt(results[s][m].mean_ssim(), 4)}" for s in sigmas]
        ms = mean([results[s][m].ms_per_frame() for s in sigmas])
        note = (
            results[sigmas[-1]][m].note
            if m not in TUNED_ROWS
            else ", ".join(f"{s.label}: {results[s][m].note.split(', ')[-1]}" for s in sigmas)
        )
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(ms, 1)} | {note} |")
    if "bm3d" in methods:
        subset = results[sigmas[0]]["bm3d"].frames
        lines += ["", "PSNR (dB) on the BM3D frames only (same frames for every method)", "",
                  "| method | " + " | ".join(s.label for s in sigmas) + " |",
                  "|---|" + "---:|" * len(sigmas)]  # fmt: skip
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_fmt(subset_psnr(results[s][m], subset)) for s in sigmas) + " |")
    return "\n".join(lines)


def results_json(dataset: Dataset, results: Results) -> dict[str, Any]:
    def key(noise: NoiseSetting) -> str:
        return f"{noise.sigma:g}" if isinstance(noise, Awgn) else noise.label

    return {
        "dataset": dataset.name,
        "description": dataset.description,
        "sequences": {s.name: list(s.clean.shape) for s in dataset.sequences},
        "results": {key(noise): {m: r.to_dict() for m, r in per.items()} for noise, per in results.items()},
    }


def _scores(results: Results, row: str, sigma: NoiseSetting, on_bm3d_frames: bool) -> float:
    res = results[sigma][row]
    if on_bm3d_frames and "bm3d" in results[sigma]:
        return subset_psnr(res, results[sigma]["bm3d"].frames)
    return res.mean_psnr()


def summary_tables(evaluated: Sequence[tuple[Dataset, Results]], rows: Sequence[str]) -> str:
    """Over all datasets: mean PSNR per sigma (each dataset weighs the same), and per dataset
    (mean over sigmas); with BM3D, every method is also scored on BM3D's frames only."""
    if not evaluated:
        return ""
    sigmas = list(evaluated[0][1])
    variants = [(False, "all frames (BM3D: its frames)")]
    if "bm3d" in rows:
        variants.append((True, "BM3D's frames only, every method"))
    lines: list[str] = []
    for subset, label in variants:
        names = [d.name for d, _ in evaluated]
        lines += [f"**Overall, mean over {len(evaluated)} datasets** — PSNR (dB), {label}", "",
                  "| method | " + " | ".join(s.label for s in sigmas) + " | avg | "
                  + " | ".join(names) + " |",
                  "|---|" + "---:|" * (len(sigmas) + 1 + len(names))]  # fmt: skip
        for row in rows:
            per_sigma = [mean([_scores(r, row, s, subset) for _, r in evaluated]) for s in sigmas]
            per_set = [mean([_scores(r, row, s, subset) for s in sigmas]) for _, r in evaluated]
            cells = [_fmt(v) for v in per_sigma] + [_fmt(mean(per_sigma))] + [_fmt(v) for v in per_set]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
