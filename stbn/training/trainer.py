"""The training loop: the model, the optimiser, flow pretraining then self-supervised steps, validation,
checkpoints, resume, DDP (the pieces: losses, schedules, flow_pretraining, validation, distributed).

Only noisy clips reach the loss; clean clips, when a batch has them, are used for the PSNR shown
in the progress bar and logs.
"""

from __future__ import annotations

import enum
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import stbn
from stbn.checkpoint import NoiseModel, load_checkpoint, load_state, save_checkpoint
from stbn.config import FlowKind
from stbn.devices import resolve_device
from stbn.model import STBN, sigma_tensor
from stbn.posterior import posterior_mean
from stbn.training.config import CompileMode, Loss, Schedule, TrainConfig, config_from_dict
from stbn.training.distributed import DistInfo
from stbn.training.flow_pretraining import pretrain_flow
from stbn.training.losses import LossModule, batch_psnr, load_denoising_teacher, make_teacher
from stbn.training.schedules import step_decay, time_decay
from stbn.training.sources import Batch
from stbn.training.validation import validate

STATE_FILE = "state.pt"
MODEL_FILE = "model.pt"
BEST_FILE = "best.pt"  # the model at its best validation so far


# --- the trainer -------------------------------------------------------------------------------------------


class Trainer:
    """Owns the model, the optimiser and the loop. ``source.next(rng, generator)`` gives batches."""

    def __init__(
        self,
        config: TrainConfig,
        source: Any,
        model: STBN | None = None,
        dist_info: DistInfo | None = None,
        val_clips: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
        progress: bool = True,
        noise_model: NoiseModel | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.dist = dist_info or DistInfo()
        self.progress = progress and self.dist.main
        self.noise_model = noise_model or NoiseModel(config.noise.kind, tuple(config.noise.sigma_range))
        self.device = resolve_device(config.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop and clip sizes: pick the fastest kernels once
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = model if model is not None else stbn.build_model(config.preset, flow=config.flow)
        if config.init:
            load_state(self.model, load_checkpoint(config.init, preset=config.preset).model.state_dict(), config.init)
        if config.init_flow:
            flow = load_checkpoint(config.init_flow).model.flow
            load_state(self.model.flow, flow.state_dict(), f"{config.init_flow}'s flow network")
        self.model.train()
        self.denoising_teacher = load_denoising_teacher(config.teacher, self.model) if config.teacher else None
        self.model.to(self.device)
        if self.denoising_teacher is not None:
            self.denoising_teacher.to(self.device)
        self.teacher: nn.Module | None = None
        self.loss_module = LossModule(self.model, config.optim.loss, config.optim.mean_l2, config.optim.precision)
        flow_ids = {id(p) for p in self.model.flow.parameters()}
        self.optimizer = torch.optim.Adam(
            [
                {"params": [p for p in self.model.parameters() if id(p) not in flow_ids], "lr": config.optim.lr},
                {"params": list(self.model.flow.parameters()), "lr": config.distill.lr},
            ]
        )
        optim = config.optim
        decay = (
            time_decay(optim.milestones, optim.gamma, 60.0 * optim.time_limit_minutes, lambda: self.train_seconds)
            if optim.schedule is Schedule.TIME and optim.time_limit_minutes
            else step_decay(optim.milestones, optim.gamma, optim.iterations)
        )
        self.train_seconds = 0.0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, decay)
        self.iteration = 0
        no_flow = self.model.config.flow is FlowKind.ZERO
        self.flow_pretrained = config.flow_pretrain.iterations == 0 or no_flow or bool(config.init or config.init_flow)
        self.best_val = float("-inf")
        self.history: list[dict[str, Any]] = []
        self.rng = np.random.default_rng([config.seed, self.dist.rank])
        self.generator = torch.Generator().manual_seed(config.seed * 1000 + self.dist.rank)
        self.val_clips = val_clips if val_clips is not None else []
        self._step: nn.Module | None = None
        self.out_dir = config.run_dir()

    # -- the step --------------------------------------------------------------------------------------------
    def distill_active(self) -> bool:
        d = self.config.distill
        return d.enabled and self.model.config.flow is not FlowKind.ZERO and self.iteration >= d.start

    def _module(self) -> nn.Module:
        """The loss step as run: the loss module, wrapped by DDP across processes, compiled when
        ``optim.compile`` asks (one graph per clip shape and distillation state)."""
        if self._step is None:
            step: nn.Module = self.loss_module
            if self.dist.world_size > 1:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                step = DistributedDataParallel(self.loss_module, device_ids=ids, find_unused_parameters=True)
            if self.config.optim.compile is not CompileMode.OFF:
                step = torch.compile(step, mode=self.config.optim.compile.value, dynamic=False)
            self._step = step
        return self._step

    def train_step(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on a batch; returns loss terms (and PSNR if the batch has clean)."""
        distill = self.distill_active()
        if distill and self.teacher is None:
            self.teacher = make_teacher(self.model)
        self.loss_module.set_teacher(self.teacher if distill else None)
        weight = self.config.distill.weight if distill else 0.0
        batch = batch.to(self.device)
        target = None
        if self.denoising_teacher is not None:
            with torch.no_grad():
                target = self.denoising_teacher(batch.noisy, batch.sigma)
        loss, main, dis, prior = self._module()(
            batch.noisy, batch.sigma, weight, self.config.distill.param_l2, target, batch.target
        )
        main, dis, prior = main.detach(), dis.detach(), prior.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.iteration += 1
        stats = {
            "loss": float(loss.detach()),
            "main": float(main),
            "distill": float(dis),
            "grad_norm": float(grad_norm),
        }
        if batch.clean is not None and self.config.optim.loss in (Loss.NLL, Loss.TEACHER):
            with torch.no_grad():
                est = (
                    posterior_mean(prior, batch.noisy, sigma_tensor(batch.sigma, batch.noisy))
                    if self.config.optim.loss is Loss.NLL
                    else prior.clamp(0.0, 1.0)
                )
            stats["psnr"] = batch_psnr(est, batch.clean)
            stats["psnr_noisy"] = batch_psnr(batch.noisy.clamp(0, 1), batch.clean)
        return stats

    # -- the loop --------------------------------------------------------------------------------------------
    def fit(self, photos_for_flow: list[np.ndarray] | None = None) -> dict[str, Any]:
        from tqdm import tqdm

        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.set_flush_denormal(True)
        if not self.flow_pretrained:
            if photos_for_flow is None:
                raise ValueError("flow pretraining needs photos (config.flow_pretrain.iterations > 0)")
            start = time.time()
            pretrain_flow(
                self.model.flow,
                photos_for_flow,
                cfg.flow_pretrain,
                cfg.data.motion,
                cfg.seed,
                self.progress,
                self._log,
                self.device,
            )
            if self.dist.world_size > 1:  # every rank pretrained with the same seed; keep rank 0's to be safe
                for p in self.model.flow.parameters():
                    dist.broadcast(p.data, 0)
            self.flow_pretrained = True
            self._log({"phase": "flow_pretrain_done", "seconds": time.time() - start})
            self.save()
        if cfg.init and self.iteration == 0:
            self._validate()  # the starting weights are the score to beat (and best.pt until beaten)
        total = cfg.optim.iterations
        bar = tqdm(
            total=total,
            initial=self.iteration,
            desc=f"train {cfg.preset}",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        limit = None if cfg.optim.time_limit_minutes is None else cfg.optim.time_limit_minutes * 60.0
        recent: list[dict[str, float]] = []
        stopped_early = False
        batches = self._batches()
        while self.iteration < total:
            if limit is not None and self.train_seconds >= limit:
                stopped_early = True
                break
            t0 = time.time()
            stats = self.train_step(next(batches))  # reading the stats waits for the device
            self.train_seconds += time.time() - t0
            recent.append(stats)
            bar.update(1)
            if self.iteration % 5 == 0 or self.iteration == total:
                window = recent[-cfg.log_every :]
                postfix = {"loss": f"{np.mean([s['loss'] for s in window]):.4f}"}
                if "psnr" in stats:
                    postfix["psnr"] = f"{np.mean([s['psnr'] for s in window]):.2f}"
                    postfix["noisy"] = f"{np.mean([s['psnr_noisy'] for s in window]):.2f}"
                postfix["lr"] = f"{self.optimizer.param_groups[0]['lr']:.1e}"
                if self.distill_active():
                    postfix["dis"] = f"{np.mean([s['distill'] for s in window]):.3f}"
                bar.set_postfix(postfix)
            if self.iteration % cfg.log_every == 0:
                window = recent[-cfg.log_every :]
                entry = {
                    "phase": "train",
                    "iteration": self.iteration,
                    "seconds": round(self.train_seconds, 1),
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                for key in window[-1]:
                    entry[key] = float(np.mean([s[key] for s in window if key in s]))
                self._log(entry)
                recent = recent[-cfg.log_every :]
            if cfg.val.every and self.iteration % cfg.val.every == 0:
                self._validate()
            if cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                self.save()
        bar.close()
        summary = {"iterations": self.iteration, "train_seconds": self.train_seconds, "stopped_early": stopped_early}
        if self.val_clips and self.dist.main:
            vals = [h for h in self.history if h.get("phase") == "val" and h["iteration"] == self.iteration]
            summary["val_psnr"] = vals[-1]["psnr"] if vals else self._validate()["psnr"]
            summary["best_val_psnr"] = self.best_val
        self.save()
        if cfg.checkpoint and self.dist.main:
            best = self.out_dir / BEST_FILE
            if best.is_file():
                shutil.copyfile(best, cfg.checkpoint)
            else:
                self.export(cfg.checkpoint)
        return summary

    def _batches(self) -> Iterator[Batch]:
        """Batches from the source: drawn here (reproducible across resumes) or by ``data.workers``
        processes, each seeded by (seed, rank, worker, iteration at start)."""
        workers = self.config.data.workers
        if workers == 0:
            while True:
                yield self.source.next(self.rng, self.generator)
        loader = torch.utils.data.DataLoader(
            _SourceStream(self.source, (self.config.seed, self.dist.rank, self.iteration)),
            batch_size=None,
            num_workers=workers,
            prefetch_factor=4,
            pin_memory=self.device.type == "cuda",
            multiprocessing_context="fork",
        )
        yield from loader

    def _validate(self) -> dict[str, Any]:
        """Validate, log, and export the model to ``best.pt`` when its posterior PSNR is the best yet."""
        if not (self.val_clips and self.dist.main):
            return {"psnr": float("nan")}
        scores = validate(self.model, self.val_clips)
        self._log({"phase": "val", "iteration": self.iteration, **scores, "sigma": self.config.val.sigma})
        if scores["psnr"] > self.best_val:
            self.best_val = scores["psnr"]
            self.export(self.out_dir / BEST_FILE)
        return scores

    # -- logging, checkpoints, resume --------------------------------------------------------------------------
    def _log(self, entry: dict[str, Any]) -> None:
        if not self.dist.main:
            return
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry}
        self.history.append(entry)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def metadata(self) -> dict[str, Any]:
        vals = [h for h in self.history if h.get("phase") == "val"]
        return {
            "train_config": self.config.to_dict(),
            "iteration": self.iteration,
            "train_seconds": round(self.train_seconds, 1),
            "distilled": self.distill_active(),
            "world_size": self.dist.world_size,
            "last_val": vals[-1] if vals else None,
        }

    def export(self, path: str | Path) -> None:
        """A model checkpoint (stbn.load_checkpoint) with the full training config in its metadata."""
        save_checkpoint(path, self.model, self.config.preset, noise=self.noise_model, metadata=_plain(self.metadata()))

    def save(self) -> None:
        if not self.dist.main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "flow_pretrained": self.flow_pretrained,
            "train_seconds": self.train_seconds,
            "best_val": self.best_val,
            "rng": self.rng.bit_generator.state,
            "generator": self.generator.get_state(),
        }
        tmp = self.out_dir / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out_dir / STATE_FILE)
        self.export(self.out_dir / MODEL_FILE)

    def resume(self, path: str | Path | None = None) -> bool:
        """Load ``output_dir/state.pt`` (or ``path``); False if there is none."""
        path = Path(path) if path else self.out_dir / STATE_FILE
        if not path.is_file():
            return False
        state = torch.load(path, map_location="cpu", weights_only=False)
        saved = config_from_dict(state["config"])
        if saved.preset != self.config.preset or saved.flow != self.config.flow:
            raise ValueError(f"{path} was trained as preset {saved.preset!r}/{saved.flow}, not {self.config.preset!r}")
        self.model.load_state_dict(state["model"])
        if state["teacher"] is not None:
            self.teacher = make_teacher(self.model)
            self.teacher.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = int(state["iteration"])
        self.flow_pretrained = bool(state["flow_pretrained"])
        self.train_seconds = float(state["train_seconds"])
        self.best_val = float(state.get("best_val", float("-inf")))
        if self.dist.world_size == 1:
            self.rng.bit_generator.state = state["rng"]
            self.generator.set_state(state["generator"])
        return True


class _SourceStream(torch.utils.data.IterableDataset):
    """An endless stream of a source's batches for DataLoader workers, each with its own seeds."""

    def __init__(self, source: Any, seed: tuple[int, ...]) -> None:
        self.source = source
        self.seed = seed

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([*self.seed, worker])
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        torch.set_num_threads(1)
        while True:
            yield self.source.next(rng, generator)


def _plain(value: Any) -> Any:
    """Only dict/list/str/int/float/bool/None (checkpoint metadata is loaded with weights_only)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):  # before str: a str-valued enum would pickle as its class
        return _plain(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
