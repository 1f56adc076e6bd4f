from __future__ import annotations

import numpy as np
import torch

import stbn


def moving_clip(frames: int, height: int, width: int, sigma: float, seed: int = 0) -> np.ndarray:
    """A textured scene panning by (1, 2) px per frame plus AWGN: (T, H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    texture = rng.uniform(0.15, 0.85, (height + 2 * frames, width + 2 * frames, 3)).astype(np.float32)
    texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3.0
    out = []
    for t in range(frames):
        clean = texture[t : t + height, 2 * t : 2 * t + width]
        noisy = clean * 255.0 + rng.normal(0.0, sigma, clean.shape)
        out.append(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))
    return np.stack(out)


def responsive_model(preset: str = "cpu-rt", scale: float = 0.7, seed: int = 0) -> stbn.STBN:
    """An untrained model whose output visibly depends on its inputs: Kaiming init scaled by 0.7
    on every denoiser conv, residual units included (the model's own init starts them as the
    identity), so the deep residual stacks respond without exploding.
    """
    torch.manual_seed(seed)
    model = stbn.build_model(preset).eval()
    flow_modules = set(model.flow.modules())
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module not in flow_modules:
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            module.weight.data *= scale
    return model
