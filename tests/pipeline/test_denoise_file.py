"""``stbn denoise``: frame folders and video files really decoded and encoded, names and counts kept,
a named error for every bad input with nothing partial left behind, and test-time adaptation whose
guard keeps the starting weights when adapting cannot help."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import stbn
from pipeline.cli import main
from pipeline.denoise_file import DenoiseOptions, denoise_file, read_input
from pipeline.sinks import VideoWriter
from stbn.adapt import AdaptConfig, adapt
from stbn.evaluation.metrics import psnr
from stbn.training.motion import synthetic_clip
from stbn.training.photos import HELDOUT_PHOTOS, load_photos
from tests.conftest import write_lossless_video

ROOT = Path(__file__).resolve().parents[2]
SIGMA = 25.0


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    frames = synthetic_clip(load_photos(HELDOUT_PHOTOS[:1]), 10, (64, 96), np.random.default_rng(4)).frames
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def noisy(clean: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(clean + rng.normal(0, SIGMA, clean.shape) + 0.5, 0, 255).astype(np.uint8)




def _write_folder(folder: Path, frames: np.ndarray) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"cam_{i * 10:04d}.jpg" if i % 2 else f"cam_{i * 10:04d}.png" for i in range(len(frames))]
    for name, frame in zip(names, frames):
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    return names


def _write_video(path: Path, frames: np.ndarray) -> Path:
    writer = VideoWriter(path, fps=25.0)
    for frame in frames:
        writer.write(frame)
    writer.close()
    return path


def test_denoise_a_frame_folder_keeps_names_and_count_and_denoises(tmp_path: Path, noisy, clean) -> None:
    names = _write_folder(tmp_path / "in", noisy)
    out = tmp_path / "out"
    assert main(["denoise", str(tmp_path / "in"), str(out), "--sigma", str(SIGMA), "--no-progress"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(str(Path(n).with_suffix(".png")) for n in names)
    result = read_input(out).frames
    assert result.shape == noisy.shape
    source = read_input(tmp_path / "in").frames  # what the model saw (JPEG frames included)
    assert psnr(result, clean, 255.0) > psnr(source, clean, 255.0) + 3.0
    assert not (tmp_path / "out.partial").exists()


def test_denoise_a_video_file_offline_and_streaming(tmp_path: Path, noisy) -> None:
    video = _write_video(tmp_path / "noisy.mp4", noisy)
    offline = tmp_path / "clean.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "denoise", str(video), str(offline), "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "denoised 10 frames 96x64" in done.stdout and "(estimated)" in done.stdout
    decoded = read_input(offline)
    assert decoded.frames.shape == noisy.shape and decoded.fps == pytest.approx(25.0)
    frames_dir = tmp_path / "streamed"
    args = ["denoise", str(video), str(frames_dir), "--lookahead", "1", "--backend", "torch", "--no-progress"]
    assert main(args) == 0
    assert sorted(p.name for p in frames_dir.iterdir())[:2] == ["frame_000001.png", "frame_000002.png"]
    assert len(list(frames_dir.iterdir())) == len(noisy)


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("missing", "InputNotFound"),
        ("garbage", "UndecodableInput"),
        ("empty", "EmptyInput"),
        ("mixed", "MixedFrameSizes"),
        ("unwritable", "UnwritableOutput"),
        ("exists", "OutputExists"),
        ("checkpoint", "BadCheckpoint"),
        ("itself", "OutputExists"),
        ("threads", "ValueError"),
    ],
)
def test_bad_inputs_give_named_errors_and_leave_nothing(tmp_path: Path, noisy, capsys, case: str, error: str) -> None:
    source, output, extra = tmp_path / "in", tmp_path / "out.mp4", []
    if case == "missing":
        source = tmp_path / "nope.mp4"
    elif case == "garbage":
        source = tmp_path / "garbage.mp4"
        source.write_bytes(b"\x00not a video" * 100)
    elif case == "empty":
        source.mkdir()
    elif case == "mixed":
        _write_folder(source, noisy[:3])
        cv2.imwrite(str(source / "zz.png"), np.zeros((32, 32, 3), np.uint8))
    else:
        _write_folder(source, noisy[:3])
        if case == "unwritable":
            (tmp_path / "a_file").write_text("x")
            output = tmp_path / "a_file" / "out.mp4"  # a file where a folder must be
        elif case == "exists":
            output.write_bytes(b"keep me")
        elif case == "itself":
            output = source  # --force must not overwrite the input
            extra = ["--force"]
        elif case == "threads":
            extra = ["--threads", "-1"]
        else:
            bad = tmp_path / "bad.pt"
            bad.write_bytes(b"random bytes, not a checkpoint")
            extra = ["--checkpoint", str(bad)]
    assert main(["denoise", str(source), str(output), "--no-progress", *extra]) == 2
    assert f"stbn denoise: {error}:" in capsys.readouterr().err
    if case == "exists":
        assert output.read_bytes() == b"keep me"
    elif case == "itself":
        assert len(list(source.iterdir())) == 3  # the input is untouched
    else:
        assert not output.exists()
    assert not list(tmp_path.glob("*.partial*"))


def test_adaptation_guard_keeps_the_original_weights_when_it_cannot_help(noisy) -> None:
    torch.set_num_threads(1)
    model = stbn.load_checkpoint(ROOT / "weights" / "stbn-cpu-rt.pt").model
    frames = noisy.astype(np.float32) / 255.0
    start = {k: v.clone() for k, v in model.state_dict().items()}
    config = AdaptConfig(steps=3, lr=0.0, frames=3, crop=32, batch_size=2)
    frozen = adapt(model, frames, SIGMA, config, "nll", 1.0)
    assert not frozen.kept_adapted and frozen.steps == 3
    assert frozen.holdout_loss_after == pytest.approx(frozen.holdout_loss_before)
    wrecked = adapt(model, frames, SIGMA, AdaptConfig(steps=3, lr=0.5, frames=3, crop=32, batch_size=2), "nll", 1.0)
    assert not wrecked.kept_adapted  # a step size that ruins the model is rolled back
    for result in (frozen, wrecked):
        assert all(torch.equal(result.model.state_dict()[k], v) for k, v in start.items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in start.items())  # the input model untouched


def test_adapt_then_save_a_checkpoint_that_loads_like_any_other(tmp_path: Path, noisy) -> None:
    _write_folder(tmp_path / "in", noisy)
    saved = tmp_path / "adapted.pt"
    options = DenoiseOptions(sigma=SIGMA, adapt_steps=4, save_adapted=saved, threads=1)
    summary = denoise_file(tmp_path / "in", tmp_path / "out", options)
    assert summary.adapt is not None and summary.adapt["steps"] == 4 and "adapted" in summary.line()
    loaded = stbn.load_checkpoint(saved, preset="cpu-rt")
    assert loaded.metadata["adapted_on"].endswith("in")
    assert loaded.metadata["adaptation"]["steps"] == 4


def test_adaptation_refuses_a_non_blind_student(noisy) -> None:
    from stbn.adapt import AdaptationError

    with pytest.raises(AdaptationError, match="blind-spot"):
        adapt(stbn.build_model("cpu-rt-distilled"), noisy.astype(np.float32) / 255, SIGMA, AdaptConfig(steps=1))
    with pytest.raises(AdaptationError, match="frames"):
        adapt(stbn.build_model("cpu-rt"), noisy[:6].astype(np.float32) / 255, SIGMA, AdaptConfig(steps=1))


def test_a_folder_longer_than_the_read_ahead_is_denoised_a_chunk_at_a_time(tmp_path: Path) -> None:
    from pipeline.denoise_file import HEAD_FRAMES, open_input

    frames = np.random.default_rng(1).integers(0, 256, (HEAD_FRAMES + 6, 32, 48, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(tmp_path / "in" / f"f{i:04d}.png"), frame)
    video = open_input(tmp_path / "in")
    assert len(video.head) == HEAD_FRAMES and video.count == HEAD_FRAMES + 6  # the rest is not read yet
    summary = denoise_file(tmp_path / "in", tmp_path / "out", DenoiseOptions(sigma=SIGMA, chunk=8, threads=1))
    assert summary.frames == HEAD_FRAMES + 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"f{i:04d}.png" for i in range(HEAD_FRAMES + 6)]


def test_shot_noise_is_denoised_and_adapted_through_the_stabilising_transform(tmp_path: Path, clean, capsys) -> None:
    rng = np.random.default_rng(2)
    x = clean / 255.0
    shot = np.clip(np.round((x + np.sqrt(0.03 * x + (4 / 255) ** 2) * rng.standard_normal(x.shape)) * 255), 0, 255)
    _write_folder(tmp_path / "in", shot.astype(np.uint8))
    out = tmp_path / "out"
    args = ["denoise", str(tmp_path / "in"), str(out), "--noise", "poisson-gaussian", "--adapt", "2", "--no-progress"]
    assert main([*args, "--gain", "0.03", "--sigma", "4", "--threads", "1"]) == 0  # (estimated: test_stabilize)
    line = capsys.readouterr().out
    assert "poisson-gaussian gain 0.0300 sigma 4.00 (given)" in line and "adapted 2 steps (trained)" in line
    assert psnr(read_input(out).frames, clean, 255.0) > psnr(read_input(tmp_path / "in").frames, clean, 255.0) + 3.0
    streamed = tmp_path / "streamed"  # adapted on the frames as the streaming loop's tables give them
    args = [*args[:2], str(streamed), *args[3:], "--gain", "0.03", "--sigma", "4", "--lookahead", "1"]
    assert main([*args, "--backend", "torch", "--threads", "1"]) == 0
    assert "streaming L=1; adapted 2 steps (trained)" in capsys.readouterr().out
    before = psnr(read_input(tmp_path / "in").frames, clean, 255.0)
    assert psnr(read_input(streamed).frames, clean, 255.0) > before + 3.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--gain", "0.02"], "--gain (0..1) goes with --noise poisson-gaussian"),
        (["--noise", "poisson-gaussian", "--gain", "nan", "--sigma", "5"], "--gain (0..1)"),
        (["--noise", "poisson-gaussian", "--sigma", "5"], "give both --gain and --sigma, or neither"),
    ],
)
def test_a_noise_model_half_given_is_refused(tmp_path: Path, noisy, capsys, extra: list[str], message: str) -> None:
    _write_folder(tmp_path / "in", noisy[:3])
    assert main(["denoise", str(tmp_path / "in"), str(tmp_path / "out"), "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_streaming_with_onnxruntime_works_from_any_working_directory(tmp_path: Path, noisy) -> None:
    """The exported graphs go to an absolute cache (here $STBN_CACHE), whatever the working directory."""
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    _write_folder(elsewhere / "in", noisy[:4])
    env = {**os.environ, "STBN_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "denoise", "in", "out", "--lookahead", "2", "--backend", "onnxruntime",
         "--sigma", str(SIGMA), "--no-progress"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300, env=env | {"PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list((elsewhere / "out").iterdir())) == 4
    assert any((tmp_path / "cache" / "engines").glob("onnx-*/fuse.onnx"))
    assert not (elsewhere / "cache").exists()


def test_sigterm_stops_like_ctrl_c_and_leaves_no_partial_output(tmp_path: Path) -> None:
    """What systemd, Docker and Kubernetes send: a message, exit 143, no *.partial* left behind."""
    import signal
    import time

    frames = np.random.default_rng(1).integers(0, 255, (400, 64, 96, 3)).astype(np.uint8)
    video = _write_video(tmp_path / "long.mp4", frames)
    out = tmp_path / "out.mp4"
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "denoise", str(video), str(out), "--sigma", "20", "--no-progress"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("out.partial*")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "finished before it could be stopped"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143, err[-2000:]
    assert "terminated; no output written" in err
    assert not out.exists() and not list(tmp_path.glob("*.partial*"))


@pytest.mark.parametrize(("camera_model", "path", "gain"), [("", "camera model", 3.0), ("none", "2x2 phases", 2.0)])
def test_camera_noise_goes_to_the_camera_model_and_is_not_adapted_to(
    tmp_path: Path, clean, capsys, camera_model: str, path: str, gain: float
) -> None:
    """A camera's correlated noise is measured blind and denoised by the shipped camera model (or,
    with --camera-checkpoint none, on the 2x2 phases); --adapt is skipped there (its loss rewards
    keeping correlated noise) and says so; the output improves."""
    from stbn.camera import CameraModel

    camera = CameraModel(shot=6e-3, read=CameraModel.read_for(6e-3))
    frames = camera.simulate(clean.astype(np.float32) / 255.0, np.random.default_rng(3))
    reference = np.round(camera.reference(clean.astype(np.float32) / 255.0) * 255.0)
    _write_folder(tmp_path / "in", frames)
    out, saved = tmp_path / "out", tmp_path / "adapted.pt"
    args = ["denoise", str(tmp_path / "in"), str(out), "--adapt", "5", "--save-adapted", str(saved), "--no-progress"]
    assert main([*args, "--camera-checkpoint", camera_model]) == 0
    captured = capsys.readouterr()
    assert "correlated (camera) noise" in captured.out and path in captured.out
    assert "adaptation skipped (correlated noise)" in captured.out
    assert "adaptation skipped: the noise is spatially correlated" in captured.err and not saved.exists()
    result = read_input(out).frames
    source = read_input(tmp_path / "in").frames
    assert psnr(result, reference, 255.0) > psnr(source, reference, 255.0) + gain  # phases: 27.5 -> 30.4 dB


def test_a_truncated_video_is_denoised_up_to_its_damage_with_a_warning(tmp_path: Path, noisy, capsys) -> None:
    """As the live file source does: the frames that decode are denoised, the damage is named."""
    import av

    full = tmp_path / "full.mp4"
    with av.open(str(full), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "10"}
        for frame in np.concatenate([noisy, noisy, noisy]):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    half = tmp_path / "half.mp4"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out = tmp_path / "out"
    assert main(["denoise", str(half), str(out), "--sigma", str(SIGMA), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "is truncated or damaged after" in err and "of the 30 its container declares" in err
    assert 0 < len(list(out.iterdir())) < 30


def test_the_inputs_format_says_whether_its_frames_went_through_an_encoder(tmp_path: Path, noisy) -> None:
    """H.264 and JPEG frames are lossy, a lossless codec is not, PNG frames may be either: the
    camera-noise level's fit is chosen from this."""
    from pipeline.denoise_file import open_input
    from stbn.noise_estimation import Compression

    lossy = _write_video(tmp_path / "lossy.mp4", noisy)
    lossless = write_lossless_video(tmp_path / "lossless.mkv", noisy)
    jpegs = tmp_path / "jpegs"
    jpegs.mkdir()
    for i, frame in enumerate(noisy[:3]):
        cv2.imwrite(str(jpegs / f"{i}.jpg"), frame)
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    for i, frame in enumerate(noisy[:3]):
        cv2.imwrite(str(pngs / f"{i}.png"), frame)
    assert open_input(lossy).compression is Compression.LOSSY
    assert open_input(lossless).compression is Compression.NONE
    assert open_input(jpegs).compression is Compression.LOSSY
    assert open_input(pngs).compression is Compression.UNKNOWN
