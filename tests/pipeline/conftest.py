"""Fixtures for the pipeline tests: real checkpoints, videos, RTSP servers and subscriber processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stbn
from pipeline import timecode
from pipeline.config import load_config
from pipeline.runner import Pipeline

REPO = Path(__file__).resolve().parents[2]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "stbn-cpu-rt-random.pt"
    stbn.save_checkpoint(path, stbn.build_model("cpu-rt"), preset="cpu-rt")
    return path


@pytest.fixture(scope="session")
def other_preset_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "stbn-gpu-rt-random.pt"
    stbn.save_checkpoint(path, stbn.build_model("gpu-rt"), preset="gpu-rt")
    return path


def base_overrides(checkpoint: Path, out: Path, sigma: float = 0.0) -> list[str]:
    """A small, fast, deterministic setup: torch backend, 1 thread, fixed sigma (0 keeps timecodes)."""
    return [
        "engine.backend=torch",
        f"engine.checkpoint={checkpoint}",
        "engine.preset=cpu-rt",
        "engine.device=cpu",
        "engine.threads=1",
        "lookahead=1",
        "noise.mode=fixed",
        f"noise.sigma={sigma}",
        f"report.dir={out}",
        "report.plot=false",
        f"publish.endpoint=tcp://127.0.0.1:{free_port()}",
    ]


def config(checkpoint: Path, out: Path, *overrides: str, sigma: float = 0.0) -> Any:
    return load_config(None, [*base_overrides(checkpoint, out, sigma), *overrides])


def write_video(path: Path, frames: int, width: int = 64, height: int = 48, fps: int = 30) -> list[int]:
    """An H.264 test video whose frame k carries the timecode k; returns the codes."""
    import av

    from pipeline.sources import synthetic_scene

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "10"}
        for k in range(frames):
            image = synthetic_scene(k, width, height)
            timecode.draw(image, k)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return list(range(frames))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    write_video(path, 12)
    return path


class RtspServerProcess:
    """``scripts/rtsp_test_server.py`` in a subprocess: stop() kills it, start() brings it back."""

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> None:
        cmd = [sys.executable, "scripts/rtsp_test_server.py", "--port", str(self.port), *self.args]
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True)
            line = self.proc.stdout.readline() if self.proc.stdout else ""
            if line.startswith("READY"):
                self.port = int(line.split()[1])
                return
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() > deadline:  # a restarted server may find its port still in use
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"RTSP test server did not start: {err}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc is not None:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe:
                    pipe.close()

    def url(self, mount: str = "/test") -> str:
        return f"rtsp://127.0.0.1:{self.port}{mount}"


@pytest.fixture
def rtsp_server() -> Iterator[RtspServerProcess]:
    """A real GstRtspServer on 127.0.0.1 serving the synthetic timecode source at /test (64x48, 15 fps)."""
    pytest.importorskip("gi")
    server = RtspServerProcess("--width", "64", "--height", "48", "--fps", "15", "--noise", "0")  # readable timecodes
    server.start()
    try:
        yield server
    finally:
        server.stop()


class SubscriberProcess:
    """``python -m pipeline.subscribe`` in another process, writing its frames to a JSON file."""

    def __init__(self, endpoint: str, out: Path, *args: str) -> None:
        self.out = out
        cmd = [sys.executable, "-m", "pipeline.subscribe", "--endpoint", endpoint, "--json", str(out), *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        _, stderr = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, stderr
        return json.loads(self.out.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_with_subscriber(cfg: Any, sub: SubscriberProcess) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the pipeline to its end while ``sub`` receives; (pipeline report, subscriber result)."""
    try:
        report = Pipeline(cfg).run()
        return report, sub.result()
    finally:
        sub.kill()


def frame_codes(frames: list[np.ndarray]) -> list[int | None]:
    return [timecode.read(f) for f in frames]
