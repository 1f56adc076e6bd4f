"""Self-supervision: training on noisy clips alone denoises; clean frames never influence training;
distillation trains only the student flow network; resume continues bit-for-bit."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import stbn
from stbn.training.config import CompileMode, DataConfig, TrainConfig
from stbn.training.losses import batch_psnr, distillation_loss, make_teacher
from stbn.training.motion import synthetic_clip
from stbn.training.noise import add_gaussian
from stbn.training.photos import TRAIN_PHOTOS, load_photos
from stbn.training.sources import NoisyVideoSource
from stbn.training.trainer import Trainer
from stbn.weights import shipped_checkpoint

TINY = {"channels": 8, "stage_b_mid": 8, "srfe_channels": 16, "flow_channels": 8, "flow_levels": 2}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(flow: str = "zero") -> stbn.STBN:
    torch.manual_seed(0)
    return stbn.build_model("cpu-rt", flow=flow, **TINY)


def noisy_clip(sigma255: float = 30.0, frames: int = 8, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) (N, H, W, 3) float32: a synthetic-motion clip and its AWGN version."""
    photos = load_photos(TRAIN_PHOTOS[:2])
    clean = synthetic_clip(photos, frames, (size, size), np.random.default_rng(5)).frames
    t = torch.from_numpy(clean)
    noisy = add_gaussian(t.unsqueeze(0), torch.tensor([sigma255 / 255]), torch.Generator().manual_seed(1))[0]
    return noisy.numpy(), clean


def config(tmp_path: Path, iterations: int, **changes: object) -> TrainConfig:
    data = DataConfig(frames=(3, 4), crop=(32, 32), batch_size=4, synthetic_fraction=1.0)
    base = TrainConfig(
        preset="cpu-rt", flow="zero", output_dir=str(tmp_path / "run"), log_every=1000, checkpoint_every=0, data=data
    )
    base = base.replace(optim=dataclasses.replace(base.optim, iterations=iterations, lr=3e-3, milestones=(0.8,)))
    return base.replace(**changes)


def test_training_on_noisy_clip_alone_raises_psnr(tmp_path: Path) -> None:
    noisy, clean = noisy_clip()
    source = NoisyVideoSource(noisy, 30.0, config(tmp_path, 1).data, clean=None)  # no clean frames at all
    trainer = Trainer(config(tmp_path, 300), source, model=tiny_model(), progress=False)
    summary = trainer.fit()
    assert summary["iterations"] == 300
    model = trainer.model.eval()
    x = torch.from_numpy(noisy).permute(0, 3, 1, 2).unsqueeze(0)
    c = torch.from_numpy(clean).permute(0, 3, 1, 2).unsqueeze(0)
    with torch.no_grad():
        out = model(x, 30 / 255)
    before, after = batch_psnr(x.clamp(0, 1), c), batch_psnr(out, c)
    assert after > before + 3.0, (before, after)


def test_training_clean_frames_do_not_change_training(tmp_path: Path) -> None:
    noisy, clean = noisy_clip(frames=6, size=48)
    garbage = np.random.default_rng(9).random(clean.shape, dtype=np.float32)
    states = []
    for k, companion in enumerate((clean, garbage)):
        cfg = config(tmp_path / str(k), 6)
        source = NoisyVideoSource(noisy, 30.0, cfg.data, clean=companion)
        trainer = Trainer(cfg, source, model=tiny_model(), progress=False)
        trainer.fit()
        states.append(trainer.model.state_dict())
        assert "psnr" in trainer.train_step(
            source.next(np.random.default_rng(0), torch.Generator())
        )  # clean is used for logging
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def test_training_distillation_changes_only_the_student_flow() -> None:
    model = tiny_model("pyramid")
    teacher = make_teacher(model)
    noisy = torch.from_numpy(noisy_clip(frames=4, size=32)[0]).permute(0, 3, 1, 2).unsqueeze(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    prior = model.prior(noisy, 30 / 255)
    loss = 5e-4 * distillation_loss(model, teacher, noisy, prior, 4e-4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.zero_grad()
    loss.backward()
    flow_names = {f"flow.{n}" for n, _ in model.flow.named_parameters()}
    for name, p in model.named_parameters():
        if name in flow_names:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert all(p.grad is None for p in teacher.parameters())
    opt.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and changed <= flow_names
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())


def test_training_distillation_switches_on_after_warmup(tmp_path: Path) -> None:
    noisy, _ = noisy_clip(frames=5, size=32)
    cfg = config(tmp_path, 4, flow="pyramid")
    cfg = cfg.replace(distill=dataclasses.replace(cfg.distill, start=2, lr=1e-3))
    source = NoisyVideoSource(noisy, 30.0, cfg.data)
    trainer = Trainer(cfg, source, model=tiny_model("pyramid"), progress=False)
    flow0 = {k: v.clone() for k, v in trainer.model.flow.state_dict().items()}
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    stats = [trainer.train_step(source.next(rng, gen)) for _ in range(2)]  # warm-up: no distillation
    assert all(s["distill"] == 0.0 for s in stats) and trainer.teacher is None
    assert all(torch.equal(v, flow0[k]) for k, v in trainer.model.flow.state_dict().items())
    stats = trainer.train_step(source.next(rng, gen))
    assert stats["distill"] > 0 and trainer.teacher is not None
    assert any(not torch.equal(v, flow0[k]) for k, v in trainer.model.flow.state_dict().items())
    assert all(torch.equal(v, flow0[k]) for k, v in trainer.teacher.state_dict().items())  # frozen copy


def test_training_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    noisy, _ = noisy_clip(frames=5, size=32)

    def trainer(out: Path) -> Trainer:
        cfg = config(out, 6)
        return Trainer(cfg, NoisyVideoSource(noisy, 30.0, cfg.data), model=tiny_model(), progress=False)

    straight = trainer(tmp_path / "a")
    straight.fit()
    interrupted = trainer(tmp_path / "b")
    for _ in range(3):  # stop half-way, as a killed run would after its last checkpoint
        interrupted.train_step(interrupted.source.next(interrupted.rng, interrupted.generator))
    interrupted.save()
    again = trainer(tmp_path / "b")
    assert again.resume() and again.iteration == 3
    again.fit()
    straight, resumed = straight.model.state_dict(), again.model.state_dict()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    loaded = stbn.load_checkpoint(tmp_path / "b" / "run" / "model.pt")
    assert loaded.metadata["iteration"] == 6
    assert loaded.metadata["train_config"]["optim"]["iterations"] == 6


def test_training_cli_on_a_noisy_video_only(tmp_path: Path) -> None:
    """`stbn train --video noisy.mkv`: no clean frames, sigma estimated, checkpoint with its config."""
    import av

    from stbn.training.cli import main as train_main

    noisy, _ = noisy_clip(frames=6, size=48)
    frames = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
    video = tmp_path / "noisy.mkv"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "bgr0"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    ckpt = tmp_path / "video.pt"
    args = ["--video", str(video), "--iterations", "3", "--output-dir", str(tmp_path / "run"), "--preset", "cpu-rt"]
    assert train_main([*args, "--checkpoint", str(ckpt), "--no-progress"]) == 0
    loaded = stbn.load_checkpoint(ckpt, preset="cpu-rt")
    assert loaded.metadata["iteration"] == 3
    level = loaded.noise.sigma_range[0]
    assert 20.0 < level < 40.0  # estimated from the noisy frames (true sigma 30)
    assert loaded.noise.extra["sigma_estimated"] is True


def test_training_l2_loss_and_poisson_gaussian_source(tmp_path: Path) -> None:
    from stbn.training.config import NoiseSettings
    from stbn.training.sources import CleanClipSampler, SyntheticNoiseSource

    cfg = config(tmp_path, 2)
    noise = NoiseSettings(kind="poisson-gaussian", sigma_range=(2.0, 10.0), gain_range=(0.005, 0.02))
    sampler = CleanClipSampler(load_photos(TRAIN_PHOTOS[:2]), [], 1.0, cfg.data.motion)
    source = SyntheticNoiseSource(sampler, cfg.data, noise)
    batch = source.next(np.random.default_rng(0), torch.Generator().manual_seed(0))
    assert batch.sigma.shape == batch.noisy.shape and batch.clean is not None
    resid = batch.noisy - batch.clean
    bright, dark = batch.clean > 0.7, batch.clean < 0.2
    assert resid[bright].std() > resid[dark].std()  # signal-dependent
    for loss in ("nll", "l2"):
        cfg_l = cfg.replace(optim=dataclasses.replace(cfg.optim, loss=loss))
        trainer = Trainer(cfg_l, source, model=tiny_model(), progress=False)
        stats = trainer.train_step(batch)
        assert np.isfinite(stats["loss"]) and stats["grad_norm"] > 0


def test_validation_reports_the_prior_mean_and_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    from stbn.training.config import ValConfig
    from stbn.training.trainer import BEST_FILE
    from stbn.training.validation import validation_clips

    noisy, _ = noisy_clip(frames=5, size=32)
    cfg = config(tmp_path, 4).replace(val=ValConfig(every=2, clips=1, frames=3, size=32, sigma=30.0))
    trainer = Trainer(
        cfg, NoisyVideoSource(noisy, 30.0, cfg.data), model=tiny_model(), val_clips=validation_clips(cfg),
        progress=False,
    )  # fmt: skip
    trainer.fit()
    vals = [h for h in trainer.history if h["phase"] == "val"]
    assert [v["iteration"] for v in vals] == [2, 4]  # the end of the run is not validated twice
    for v in vals:
        assert np.isfinite(v["psnr"]) and np.isfinite(v["prior_mean_psnr"])
        assert len(v["prior_mean_orders"]) == 1 and sorted(v["prior_mean_orders"][0]) == ["B", "G", "R"]
    assert trainer.best_val == max(v["psnr"] for v in vals)
    best = stbn.load_checkpoint(tmp_path / "run" / BEST_FILE)
    assert best.metadata["last_val"]["psnr"] == trainer.best_val


def test_student_learns_the_teachers_posterior_and_sees_the_centre_pixel(tmp_path: Path) -> None:
    teacher_path = tmp_path / "teacher.pt"
    stbn.save_checkpoint(teacher_path, tiny_model("pyramid"), "cpu-rt")
    noisy, _ = noisy_clip(frames=5, size=32)
    cfg = config(tmp_path, 40, preset="cpu-rt-distilled", flow="pyramid")
    cfg = cfg.replace(teacher=str(teacher_path), optim=dataclasses.replace(cfg.optim, loss="teacher"))
    torch.manual_seed(0)
    student = stbn.build_model("cpu-rt-distilled", flow="pyramid", **TINY)
    trainer = Trainer(cfg, NoisyVideoSource(noisy, 30.0, cfg.data), model=student, progress=False)
    teacher = trainer.denoising_teacher
    assert teacher is not None and not any(p.requires_grad for p in teacher.parameters())
    student_flow, teacher_flow = student.flow.state_dict(), teacher.flow.state_dict()
    assert all(torch.equal(student_flow[k], teacher_flow[k]) for k in teacher_flow)  # the teacher's flow
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    batch = trainer.source.next(rng, gen)
    with torch.no_grad():
        target = teacher(batch.noisy, batch.sigma)
        identity = float((batch.noisy - target).pow(2).mean())  # the untrained student is near the identity
    for _ in range(40):
        trainer.train_step(trainer.source.next(rng, gen))
    with torch.no_grad():
        learnt = float((student.prior(batch.noisy, batch.sigma) - target).pow(2).mean())
    assert learnt < 0.7 * identity, (learnt, identity)
    x = torch.from_numpy(noisy[:3]).permute(0, 3, 1, 2).unsqueeze(0).requires_grad_(True)
    est = student.prior(x, 30 / 255)
    assert est.shape == x.shape
    est[0, 1, :, 16, 16].sum().backward()
    assert float(x.grad[0, 1, :, 16, 16].abs().sum()) > 0  # no blind spot: the pixel itself counts


def test_a_new_preset_starts_from_another_checkpoints_flow_network(tmp_path: Path) -> None:
    donor_path = tmp_path / "donor.pt"
    torch.manual_seed(1)
    donor = stbn.build_model("cpu-rt")  # the same pyramid flow network as the camera preset
    stbn.save_checkpoint(donor_path, donor, "cpu-rt")
    cfg = config(tmp_path, 1, preset="cpu-rt-camera", flow="pyramid", init_flow=str(donor_path))
    noisy, _ = noisy_clip(frames=4, size=32)
    trainer = Trainer(cfg, NoisyVideoSource(noisy, 30.0, cfg.data), progress=False)
    assert trainer.flow_pretrained  # nothing left to pretrain
    mine, theirs = trainer.model.flow.state_dict(), donor.flow.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in theirs)
    assert trainer.model.config.unshuffle == 2  # the rest is the camera preset's own
    bad = config(tmp_path, 1, preset="cpu-rt-camera", flow="pyramid", init_flow=str(shipped_checkpoint("gpu-rt")))
    with pytest.raises(stbn.CheckpointError, match="flow network"):
        Trainer(bad, NoisyVideoSource(noisy, 30.0, bad.data), progress=False)  # gpu-rt's is wider


def test_teacher_and_student_configs_must_agree(tmp_path: Path) -> None:
    from stbn.training.losses import load_denoising_teacher
    from stbn.yamlconfig import ConfigError

    with pytest.raises(ConfigError, match="teacher"):
        TrainConfig(teacher="t.pt")
    with pytest.raises(ConfigError, match="teacher"):
        TrainConfig(optim=dataclasses.replace(TrainConfig().optim, loss="teacher"))
    with pytest.raises(ValueError, match="ring_mean"):
        stbn.build_model("cpu-rt", blind_spot=False)
    path = tmp_path / "student.pt"
    stbn.save_checkpoint(path, stbn.build_model("cpu-rt-distilled"), "cpu-rt-distilled")
    with pytest.raises(ValueError, match="non-blind student"):
        load_denoising_teacher(path, stbn.build_model("cpu-rt"))
    # a non-blind teacher (a camera model) trains another non-blind one; the same flow network is taken
    student = stbn.build_model("cpu-rt-camera")
    teacher = load_denoising_teacher(path, student)
    assert not teacher.config.blind_spot
    flows = zip(student.flow.state_dict().values(), teacher.flow.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in flows)


def test_time_boxed_training_decays_on_the_clock_in_bf16_with_data_workers(tmp_path: Path) -> None:
    """The GPU bring-up's mode: the time box ends the run, the learning rate halves at half of it,
    batches come from a worker process, the network runs in bf16 autocast and still learns."""
    base = config(tmp_path, 10**6, data=DataConfig(frames=(3, 3), crop=(32, 32), batch_size=2, workers=1))
    optim = dataclasses.replace(
        base.optim, schedule="time", time_limit_minutes=0.1, milestones=(0.5,), precision="bf16", loss="nll"
    )
    source_config = base.replace(optim=optim)
    noisy, _ = noisy_clip()
    trainer = Trainer(
        source_config, NoisyVideoSource(noisy, 30.0, source_config.data), model=tiny_model(), progress=False
    )
    summary = trainer.fit()
    assert summary["stopped_early"] and summary["train_seconds"] >= 6.0
    assert 0 < summary["iterations"] < 10**6
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 * 0.5)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_training_config_names_bad_schedule_precision_device_and_workers() -> None:
    from stbn.yamlconfig import ConfigError

    optim = TrainConfig().optim
    with pytest.raises(ConfigError, match="time_limit_minutes"):
        dataclasses.replace(optim, schedule="time")
    with pytest.raises(ConfigError, match=r"optim\.precision"):
        dataclasses.replace(optim, precision="fp16")
    with pytest.raises(ConfigError, match=r"data\.workers"):
        DataConfig(workers=-1)
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="tpu")
    from stbn.training.config import config_from_dict
    from stbn.training.losses import LossModule

    with pytest.raises(ConfigError, match=r"optim\.loss"):  # no silent fallback to L2
        config_from_dict({"optim": {"loss": "l1"}})
    with pytest.raises(ValueError, match="not a valid Loss"):
        LossModule(tiny_model(), "l1")


def test_fine_tuning_starts_from_the_checkpoint_and_skips_flow_pretraining(tmp_path: Path) -> None:
    shipped = shipped_checkpoint()
    noisy, _ = noisy_clip(frames=5, size=32)
    cfg = config(tmp_path, 2, flow=None, init=str(shipped))
    cfg = cfg.replace(flow_pretrain=dataclasses.replace(cfg.flow_pretrain, iterations=100))
    trainer = Trainer(cfg, NoisyVideoSource(noisy, 30.0, cfg.data), progress=False)
    start = stbn.load_checkpoint(shipped).model.state_dict()
    assert trainer.flow_pretrained  # fit() needs no photos for the flow
    assert all(torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    trainer.fit()
    assert any(not torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    with pytest.raises(stbn.CheckpointError, match=r"preset 'cpu-rt'.*'gpu-rt'"):
        Trainer(cfg.replace(preset="gpu-rt"), NoisyVideoSource(noisy, 30.0, cfg.data), progress=False)


@pytest.mark.slow
def test_a_compiled_training_step_is_the_eager_step(tmp_path: Path) -> None:
    """optim.compile: the same losses and the same updated weights as eager, step after step."""
    noisy, _ = noisy_clip(frames=5, size=32)
    runs = {}
    for mode in (CompileMode.OFF, CompileMode.DEFAULT):
        cfg = config(tmp_path / mode.value, 3)
        cfg = cfg.replace(optim=dataclasses.replace(cfg.optim, compile=mode))
        trainer = Trainer(cfg, NoisyVideoSource(noisy, 30.0, cfg.data), model=tiny_model(), progress=False)
        batch = trainer.source.next(trainer.rng, trainer.generator)
        losses = [trainer.train_step(batch)["loss"] for _ in range(3)]
        runs[mode] = losses, trainer.model.state_dict()
    (eager, eager_w), (compiled, compiled_w) = runs[CompileMode.OFF], runs[CompileMode.DEFAULT]
    assert eager[2] < eager[0] and np.allclose(eager, compiled, rtol=1e-4, atol=1e-5), (eager, compiled)
    for key, value in eager_w.items():
        assert torch.allclose(value, compiled_w[key], atol=1e-4), key
