"""Entry points: train from a config (synthetic noise over clean sources), or on a user's noisy video."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from stbn.checkpoint import NoiseModel
from stbn.io import read_clip, to_float
from stbn.noise_estimation import estimate_video_sigma
from stbn.training.config import TrainConfig
from stbn.training.distributed import init_distributed
from stbn.training.sources import CleanClipSampler, NoisyVideoSource, SyntheticNoiseSource, training_photos
from stbn.training.trainer import Trainer
from stbn.training.validation import validation_clips


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train with synthetic noise on the configured clean sources; returns a summary."""
    info = init_distributed()
    sampler = CleanClipSampler.from_config(config.data)
    source = SyntheticNoiseSource(sampler, config.data, config.noise)
    trainer = Trainer(config, source, dist_info=info, val_clips=validation_clips(config), progress=progress)
    if resume and trainer.resume():
        print(f"resumed {config.run_dir()} at iteration {trainer.iteration}")
    needs_photos = not trainer.flow_pretrained
    return trainer.fit(training_photos(config.data) if needs_photos else None)


def train_on_video(
    video: str | Path,
    config: TrainConfig,
    sigma: float | None = None,
    max_frames: int | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fully self-supervised training on one noisy video (no clean frames anywhere).

    ``sigma`` (0..255) defaults to a blind estimate from the frames. Flow pretraining still uses
    synthetic clips when ``config.flow_pretrain.iterations > 0``; validation is off.
    """
    info = init_distributed()
    frames = read_clip(video, 0, max_frames)
    level = float(sigma) if sigma is not None else estimate_video_sigma(frames)
    if progress and info.main:
        print(
            f"{video}: {len(frames)} frames {frames.shape[2]}x{frames.shape[1]}, sigma {level:.2f}"
            f"{'' if sigma is not None else ' (estimated)'}"
        )
    data = dataclasses.replace(config.data, synthetic_fraction=1.0, videos=())
    config = config.replace(data=data, val=dataclasses.replace(config.val, clips=0))
    source = NoisyVideoSource(to_float(frames), level, config.data)
    noise = NoiseModel("gaussian", (level, level), {"source_video": str(video), "sigma_estimated": sigma is None})
    trainer = Trainer(config, source, dist_info=info, val_clips=[], progress=progress, noise_model=noise)
    if resume and trainer.resume():
        print(f"resumed {config.run_dir()} at iteration {trainer.iteration}")
    summary = trainer.fit(training_photos(config.data) if not trainer.flow_pretrained else None)
    summary["sigma"] = level
    return summary
