"""DDP across two real processes (gloo on the CPU): gradients and parameters stay equal across ranks."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

import stbn
from stbn.training.config import DataConfig, TrainConfig
from stbn.training.distributed import init_distributed
from stbn.training.sources import NoisyVideoSource
from stbn.training.trainer import Trainer

TINY = {"channels": 8, "stage_b_mid": 8, "srfe_channels": 16, "flow_channels": 8, "flow_levels": 2}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank))
    torch.set_num_threads(1)
    info = init_distributed()
    try:
        rng = np.random.default_rng(0)
        noisy = (0.5 + 0.1 * rng.standard_normal((6, 32, 32, 3))).astype(np.float32)
        data = DataConfig(frames=(3, 3), crop=(32, 32), batch_size=2, synthetic_fraction=1.0)
        cfg = TrainConfig(preset="cpu-rt", flow="pyramid", output_dir=f"{out}/run", checkpoint_every=0, data=data)
        cfg = cfg.replace(distill=cfg.distill.__class__(start=1, lr=1e-3), log_every=1000)
        torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
        model = stbn.build_model("cpu-rt", flow="pyramid", **TINY)
        trainer = Trainer(cfg, NoisyVideoSource(noisy, 25.0, data), model=model, dist_info=info, progress=False)
        record = {"batches": [], "grads": [], "params": []}
        for _ in range(3):  # step 0 without, steps 1-2 with distillation (student flow gets DDP gradients too)
            batch = trainer.source.next(trainer.rng, trainer.generator)
            trainer.train_step(batch)
            record["batches"].append(batch.noisy.clone())
            record["grads"].append(
                {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            )
            record["params"].append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        torch.save(record, f"{out}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_training_ddp_two_processes_stay_synchronised(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for b0, b1 in zip(r0["batches"], r1["batches"], strict=True):
        assert not torch.equal(b0, b1)  # each rank trains on its own data
    for step in range(3):
        g0, g1 = r0["grads"][step], r1["grads"][step]
        assert g0.keys() == g1.keys() and len(g0) > 0
        for name in g0:
            assert torch.allclose(g0[name], g1[name], atol=1e-7), (step, name)
        for key, value in r0["params"][step].items():
            assert torch.equal(value, r1["params"][step][key]), (step, key)
    assert any(k.startswith("flow.") for k in r0["grads"][2])  # distillation gradients were all-reduced too
