"""Flow pretraining: the flow network on synthetic-motion clips with ground-truth flow, before the
denoiser trains (the paper's distillation then keeps it aligned)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from stbn.training.config import FlowPretrainConfig
from stbn.training.motion import MotionConfig, synthetic_clip
from stbn.training.noise import add_gaussian, sample_sigmas
from stbn.training.schedules import step_decay, time_decay


def pretrain_flow(
    flow: nn.Module,
    photos: list[np.ndarray],
    config: FlowPretrainConfig,
    motion: MotionConfig,
    seed: int,
    progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    device: torch.device | None = None,
) -> list[float]:
    """Supervised end-point-error training of a flow network on synthetic-motion pairs (both directions), with
    AWGN drawn from ``config.sigma_range`` (0 included: clean pairs) on both frames. With
    ``config.time_limit_minutes`` it stops at that time, ``iterations`` being an upper bound."""
    from tqdm import tqdm

    device = device or torch.device("cpu")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=config.lr)
    start = time.time()
    limit = None if config.time_limit_minutes is None else config.time_limit_minutes * 60.0
    decay = (
        step_decay((0.6, 0.85), 0.3, config.iterations)
        if limit is None
        else time_decay((0.6, 0.85), 0.3, limit, lambda: time.time() - start)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    flow.train()
    losses: list[float] = []
    zero: list[float] = []
    bar = tqdm(range(config.iterations), desc="flow pretrain", disable=not progress, dynamic_ncols=True)
    for it in bar:
        if limit is not None and time.time() - start >= limit:
            break
        a, b, gt = [], [], []
        for _ in range(max(config.batch_size // 2, 1)):
            clip = synthetic_clip(photos, 2, (config.crop, config.crop), rng, motion)
            a += [clip.frames[0], clip.frames[1]]
            b += [clip.frames[1], clip.frames[0]]
            gt += [clip.flow_next[0], clip.flow_prev[0]]
        ta = torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2)
        tb = torch.from_numpy(np.stack(b)).permute(0, 3, 1, 2)
        target = torch.from_numpy(np.stack(gt))
        sig = sample_sigmas(ta.shape[0], config.sigma_range, gen)
        ta, tb = add_gaussian(ta, sig, gen).to(device), add_gaussian(tb, sig, gen).to(device)
        target = target.to(device)
        loss = (flow(ta, tb) - target).norm(dim=1).mean()  # end-point error
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        zero.append(float(target.norm(dim=1).mean()))
        if it % 10 == 0:
            bar.set_postfix(epe=f"{np.mean(losses[-50:]):.3f}", zero_flow=f"{np.mean(zero[-50:]):.3f}")
        if log is not None and (it + 1) % 100 == 0:
            log(_flow_entry(losses, zero))
    if log is not None and len(losses) % 100:  # the last iterations of a time-boxed run
        log(_flow_entry(losses, zero))
    flow.eval()
    return losses


def _flow_entry(losses: list[float], zero: list[float]) -> dict[str, Any]:
    return {
        "phase": "flow_pretrain",
        "iteration": len(losses),
        "epe": float(np.mean(losses[-100:])),
        "epe_zero_flow": float(np.mean(zero[-100:])),
    }
