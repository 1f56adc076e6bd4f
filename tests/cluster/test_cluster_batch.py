"""``stbn denoise IN_DIR OUT_DIR --cluster local``: a batch of real videos on a Ray instance started for
the run; a corrupt file fails alone; a killed batch leaves no partial output under a final name and
goes on where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from cluster.batch import BatchError, batch_inputs, batch_outputs
from tests.cluster.conftest import ray_env

pytestmark = pytest.mark.slow


def write_video(path: Path, frames: int, size: tuple[int, int] = (64, 96), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    h, w = size
    scene = rng.integers(40, 215, (h, w * 2, 3)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10"}
        for t in range(frames):
            image = np.clip(scene[:, t : t + w] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def settled_outputs(out: Path, quiet_s: float = 2.0, timeout: float = 20.0) -> list[Path]:
    """The final-named outputs once none has appeared for ``quiet_s``."""
    seen: list[Path] = []
    changed = time.monotonic()
    deadline = changed + timeout
    while time.monotonic() < deadline:
        now = sorted(p for p in out.iterdir() if ".partial" not in p.name)
        if now != seen:
            seen, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet_s:
            break
        time.sleep(0.1)
    return seen


def batch_command(inputs: Path, outputs: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cluster.cli", "denoise", str(inputs), str(outputs), "--cluster", "local",
            "--checkpoint", str(checkpoint), "--sigma", "20", "--no-progress", *extra]  # fmt: skip


def test_a_batch_with_a_corrupt_file_finishes_the_others(cluster_checkpoint: Path, tmp_path: Path) -> None:
    videos = tmp_path / "in"
    videos.mkdir()
    for k in range(3):
        write_video(videos / f"clip{k}.mp4", 10 + k, seed=k)
    (videos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    (videos / "notes.txt").write_text("not a video: not in the batch")
    out = tmp_path / "out"
    proc = subprocess.run(batch_command(videos, out, cluster_checkpoint), cwd=tmp_path, env=ray_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # one file failed
    table = proc.stdout
    assert "4 file(s): 3 done, 0 skipped, 1 failed; 33 frames denoised" in table
    broken = next(line for line in table.splitlines() if line.startswith("broken.mp4"))
    assert "failed" in broken and "UndecodableInput" in broken
    for k in range(3):
        assert frame_count(out / f"clip{k}.mp4") == 10 + k
    assert sorted(p.name for p in out.iterdir()) == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]


def test_a_killed_batch_goes_on_where_it_stopped(cluster_checkpoint: Path, tmp_path: Path) -> None:
    videos = tmp_path / "in"
    videos.mkdir()
    for k in range(4):
        write_video(videos / f"clip{k}.mp4", 48, size=(96, 128), seed=k)
    listing = tmp_path / "batch.txt"  # the list-file form, paths relative to it
    listing.write_text("# four clips\n" + "".join(f"in/clip{k}.mp4\n" for k in range(4)))
    out = tmp_path / "out"
    command = batch_command(listing, out, cluster_checkpoint, "--threads", "1")
    proc = subprocess.Popen(command, cwd=tmp_path, env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and any(p.name.endswith(".mp4") and ".partial" not in p.name for p in out.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver, its Ray instance and the workers
        proc.wait(30)
    # Ray's workers are not in the driver's process group: one may still finish its file before it
    # notices that its node is gone (a complete output, renamed from its partial name at once)
    finished = settled_outputs(out)
    assert 1 <= len(finished) < 4, f"the kill came too late to test anything: {finished}"
    for path in finished:  # nothing incomplete under a final name
        assert frame_count(path) == 48, path
    done = subprocess.run(command, cwd=tmp_path, env=ray_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(finished)} of 4 outputs exist and are skipped" in done.stderr
    assert f"4 file(s): {4 - len(finished)} done, {len(finished)} skipped, 0 failed" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [f"clip{k}.mp4" for k in range(4)]  # no .partial left
    for k in range(4):
        assert frame_count(out / f"clip{k}.mp4") == 48


def test_batch_inputs_and_output_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "x.mp4").write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("a/x.mp4\n\n# comment\nb/x.mp4\n")
    inputs = batch_inputs(listing)
    assert inputs == [(tmp_path / "a" / "x.mp4").resolve(), (tmp_path / "b" / "x.mp4").resolve()]
    with pytest.raises(BatchError, match="would both be written to"):
        batch_outputs(inputs, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchError, match="no videos"):
        batch_inputs(tmp_path / "empty")
    with pytest.raises(BatchError, match="no such folder or list file"):
        batch_inputs(tmp_path / "missing")
