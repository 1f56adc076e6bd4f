"""Test-time adaptation: a few self-supervised steps on the very clip being denoised (``stbn
denoise --adapt``, the live pipeline's ``adapt:``); the training machinery it drives is imported
only when it runs.

The blind-spot model needs no clean frames, so it can go on learning from the user's own noisy
video: random T-frame crops of the clip, starting from the checkpoint. The flow network stays
frozen (its training needs the distillation teacher). A guard scores fixed crops of frames held
back from the steps before and after, and keeps the starting weights unless that held-back loss fell.

Objective ``mean``: the L2 between the blind-spot prior mean and the noisy frame. For any zero-mean
noise independent of the context, E|mu - y|^2 = E|mu - x|^2 + noise variance, so this loss (and the
guard on it) ranks weights exactly as the prior mean's error against the unseen clean frame would,
whatever the noise model; the prior covariance is left as trained. ``trained``: the checkpoint's
own loss (Gaussian NLL + L2 on the mean), which adapts the covariance too (+0.1 to +0.3 dB at 300
steps on AWGN) but assumes the noise is AWGN of the given level: on Poisson-Gaussian noise treated
as AWGN it let the covariance absorb the misfit and lost 1.0 dB while its own guard kept it.
``choose_objective`` picks ``trained`` where that assumption holds (AWGN, or noise stabilised by
stbn.stabilize) and ``mean`` where the clip's noise looks signal-dependent (bench/adapt.py).
"""

from __future__ import annotations

import copy
import enum
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stbn.model import STBN
from stbn.noise_estimation import estimate_clip_noise

if TYPE_CHECKING:
    from stbn.training.losses import LossModule


class Objective(enum.Enum):
    MEAN = "mean"  # the prior mean's blind-spot L2: any zero-mean noise
    TRAINED = "trained"  # the checkpoint's own loss: AWGN of the given level


class AdaptationError(ValueError):
    """A model or clip that cannot be adapted (a non-blind student, a clip too short or too small)."""


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 300
    seconds: float | None = None  # stop after this much time as well (whichever comes first)
    lr: float = 2e-3  # the peak of the cosine decay (bench/adapt.py)
    frames: int = 5  # T of each crop
    crop: int = 64
    batch_size: int = 4
    holdout: float = 0.2  # share of the clip's frames held back for the guard (at least T)
    guard_crops: int = 8
    min_gain: float = 0.0  # the held-back loss must fall by more than this to keep the new weights
    seed: int = 0
    objective: Objective = Objective.MEAN
    cosine_decay: bool = True  # lr falls from ``lr`` to 0 over ``steps`` (+0.1 dB over a constant lr)

    def __post_init__(self) -> None:
        if not isinstance(self.objective, Objective):
            raise AdaptationError(f"adapt: objective must be an Objective, got {self.objective!r}")
        if self.steps < 0 or self.lr < 0 or self.batch_size < 1 or self.frames < 2 or self.crop < 16:
            raise AdaptationError("adapt: steps and lr >= 0, batch_size >= 1, frames >= 2, crop >= 16")
        if self.seconds is not None and self.seconds <= 0:
            raise AdaptationError(f"adapt: seconds must be > 0, got {self.seconds}")
        if not 0.0 < self.holdout < 1.0:
            raise AdaptationError(f"adapt: holdout must be in (0, 1), got {self.holdout}")


@dataclass(frozen=True)
class AdaptResult:
    model: STBN  # the adapted model, or the starting one when the guard kept it
    kept_adapted: bool
    steps: int
    seconds: float
    holdout_loss_before: float
    holdout_loss_after: float

    def summary(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "holdout_loss_before": self.holdout_loss_before,
            "holdout_loss_after": self.holdout_loss_after,
            "kept": "adapted" if self.kept_adapted else "original (the held-back loss did not fall)",
        }


# Why adaptation is skipped on a camera's spatially correlated noise: within a 2x2 phase the
# neighbours still share part of a pixel's noise, so both self-supervised losses (and the guard's
# held-back loss) improve by keeping it. Measured: a high-ISO simulated camera clip, 300 steps,
# 35.19 -> 29.05 dB with the guard satisfied (bench/camera_adapt.py; 100 steps of either objective:
# -4.7 / -5.3 dB).
CORRELATED_NOISE_SKIP = (
    "adaptation skipped: the noise is spatially correlated (a camera's), where the self-supervised loss "
    "rewards keeping it (measured: -5 to -6 dB on simulated camera clips)"
)


def choose_objective(noisy: np.ndarray, stabilised: bool) -> Objective:
    """``trained`` where the checkpoint's AWGN likelihood fits the clip ((N, H, W, 3) uint8):
    stabilised noise, or noise whose blind Poisson-Gaussian estimate is not dominated by its
    signal-dependent part at mid-grey; ``mean`` (safe for any noise) otherwise."""
    if stabilised:
        return Objective.TRAINED
    a, b = estimate_clip_noise(noisy)
    return Objective.MEAN if a * 0.5 > b else Objective.TRAINED


def trained_loss(metadata: dict[str, Any]) -> tuple[str, float]:
    """The loss a checkpoint was trained with (its metadata's train config): (loss, mean_l2 weight)."""
    optim = (metadata.get("train_config") or {}).get("optim") or {}
    return str(optim.get("loss", "nll")), float(optim.get("mean_l2", 0.0))


def _holdout_batches(
    noisy: np.ndarray, sigma: float, config: AdaptConfig, frames: int, crop: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from stbn.training.motion import random_window

    rng = np.random.default_rng([config.seed, 1])
    out = []
    for _ in range(config.guard_crops):
        clip = noisy[random_window(noisy.shape, frames, crop, rng)]
        out.append(
            (torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).unsqueeze(0), torch.tensor([sigma]))
        )
    return out


@torch.no_grad()
def _holdout_loss(loss: LossModule, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    was = loss.model.training
    loss.model.eval()
    device = next(loss.model.parameters()).device
    values = [float(loss(x.to(device), s.to(device), 0.0, 0.0)[1]) for x, s in batches]
    loss.model.train(was)
    return float(np.mean(values))


def adapt(
    model: STBN,
    noisy: np.ndarray,
    sigma255: float,
    config: AdaptConfig,
    loss: str = "nll",
    mean_l2: float = 1.0,
    progress: Any = None,
    cancelled: Any = None,
) -> AdaptResult:
    """Adapt a copy of ``model`` to ``noisy`` ((N, H, W, 3) float in [0, 1], the clip's own frames).
    ``loss`` and ``mean_l2`` are the checkpoint's own (``trained_loss``), used by objective "trained".

    ``progress(step, steps)`` is called after every step when given; ``cancelled()`` returning True
    ends the steps early (the guard still decides). The input model is never changed.
    """
    if not model.config.blind_spot:
        raise AdaptationError(
            "test-time adaptation needs a blind-spot model (its loss reads only noisy frames); adapt the "
            "student's teacher instead"
        )
    if config.objective is Objective.MEAN:
        loss, mean_l2 = "l2", 0.0
    if loss not in ("nll", "l2"):
        raise AdaptationError(f"adaptation supports the nll and l2 losses, not {loss!r}")
    n, h, w = noisy.shape[:3]
    held = max(config.frames, round(n * config.holdout))
    if n - held < config.frames:
        raise AdaptationError(
            f"adaptation needs at least {2 * config.frames} frames ({config.frames} to train on, "
            f"{config.frames} held back), the clip has {n}"
        )
    crop = min(config.crop, h // 16 * 16, w // 16 * 16)
    if crop < 16:
        raise AdaptationError(f"frames of {w}x{h} are too small to adapt on (16x16 crops at least)")
    sigma = sigma255 / 255.0
    train_frames, held_frames = noisy[: n - held], noisy[n - held :]
    # the training machinery, loaded only when a clip is adapted (the pipeline and `stbn` import this module)
    from stbn.training.config import DataConfig
    from stbn.training.losses import LossModule
    from stbn.training.sources import NoisyVideoSource

    data = DataConfig(frames=(config.frames, config.frames), crop=(crop, crop), batch_size=config.batch_size)
    source = NoisyVideoSource(train_frames, sigma255, data)
    start_state = copy.deepcopy(model.state_dict())
    work = copy.deepcopy(model).train()
    objective = LossModule(work, loss, mean_l2)
    guard = _holdout_batches(held_frames, sigma, config, config.frames, crop)
    before = _holdout_loss(objective, guard)
    flow_ids = {id(p) for p in work.flow.parameters()}
    params = [p for p in work.parameters() if id(p) not in flow_ids]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    rng = np.random.default_rng([config.seed, 0])
    generator = torch.Generator().manual_seed(config.seed)
    start = time.time()
    steps = 0
    while steps < config.steps and (config.seconds is None or time.time() - start < config.seconds):
        if cancelled is not None and cancelled():
            break
        batch = source.next(rng, generator).to(next(work.parameters()).device)
        total = objective(batch.noisy, batch.sigma, 0.0, 0.0)[0]
        if config.cosine_decay:  # over the steps or the time, whichever runs out first
            done = steps / max(config.steps, 1)
            if config.seconds is not None:
                done = max(done, (time.time() - start) / config.seconds)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * 0.5 * (1.0 + np.cos(np.pi * min(done, 1.0)))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        steps += 1
        if progress is not None:
            progress(steps, config.steps)
    after = _holdout_loss(objective, guard)
    seconds = time.time() - start
    work.eval()
    if not after < before - config.min_gain:
        work.load_state_dict(start_state)
        return AdaptResult(work, False, steps, seconds, before, after)
    return AdaptResult(work, True, steps, seconds, before, after)
