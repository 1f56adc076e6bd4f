"""Validation: fixed noisy synthetic clips from the held-out photos; posterior and prior-mean PSNR."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from stbn.model import STBN, sigma_tensor
from stbn.posterior import posterior_mean
from stbn.training.config import TrainConfig
from stbn.training.losses import batch_psnr
from stbn.training.motion import synthetic_clip
from stbn.training.noise import add_gaussian
from stbn.training.photos import HELDOUT_PHOTOS, load_photos


def validation_clips(config: TrainConfig) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Fixed (noisy, sigma, clean) synthetic clips from the held-out photos, seeded."""
    val = config.val
    if val.clips <= 0:
        return []
    photos = load_photos(HELDOUT_PHOTOS)
    rng = np.random.default_rng(val.seed)
    out = []
    for k in range(val.clips):
        clip = synthetic_clip(photos, val.frames, (val.size, val.size), rng, config.data.motion)
        clean = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).unsqueeze(0)
        gen = torch.Generator().manual_seed(val.seed + k)
        sigma = torch.tensor([val.sigma / 255.0])
        out.append((add_gaussian(clean, sigma, gen), sigma, clean))
    return out


CHANNEL_ORDERS = tuple(itertools.permutations(range(3)))


@torch.no_grad()
def validate(model: STBN, clips: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """Posterior PSNR, prior-mean PSNR and the prior mean's best channel order (the identity when
    the mean is a denoised image; a permutation flags a mean whose colours the covariance hides)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    post, prior_mean, orders = [], [], []
    for noisy, sigma, clean in clips:
        noisy, sigma, clean = noisy.to(device), sigma.to(device), clean.to(device)
        prior = model.prior(noisy, sigma)
        if not model.config.blind_spot:  # a student: its estimate, no prior to check
            post.append(batch_psnr(prior.clamp(0, 1), clean))
            continue
        post.append(batch_psnr(posterior_mean(prior, noisy, sigma_tensor(sigma, noisy)), clean))
        mean = prior[:, :, :3].clamp(0, 1)
        by_order = {order: batch_psnr(mean[:, :, list(order)], clean) for order in CHANNEL_ORDERS}
        prior_mean.append(by_order[(0, 1, 2)])
        orders.append(max(by_order, key=by_order.__getitem__))
    model.train(was_training)
    if not post:
        return {"psnr": float("nan")}
    if not prior_mean:
        return {"psnr": float(np.mean(post))}
    return {
        "psnr": float(np.mean(post)),
        "prior_mean_psnr": float(np.mean(prior_mean)),
        "prior_mean_orders": ["".join("RGB"[c] for c in order) for order in orders],
    }
