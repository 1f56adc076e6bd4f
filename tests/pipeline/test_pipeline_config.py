"""Config: YAML into frozen dataclasses, key-naming errors, typed --set overrides, shipped configs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from engines import Backend, EngineConfig, Precision
from pipeline.config import ConfigError, PipelineConfig, load_config
from stbn.noise_estimation import Correlation

from .conftest import REPO, subprocess_env


def test_shipped_configs_load() -> None:
    for name in ("default", "camera", "rtsp", "gpu-tensorrt"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert isinstance(cfg, PipelineConfig)
    default = load_config(REPO / "configs" / "default.yaml")
    assert default.engine.checkpoint == "weights/stbn-cpu-rt.pt"
    assert default.engine.backend == "auto"
    assert default.publish.endpoint.startswith("tcp://127.0.0.1:")
    assert default.sources[0].kind == "synthetic" and default.sources[0].frames > 0


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  - id: a\n    kind: rtsp\n    urll: rtsp://x/y\n")
    with pytest.raises(ConfigError, match=r"unknown key 'sources\[0\]\.urll'"):
        load_config(path)
    path.write_text("publish:\n  endpointt: tcp://127.0.0.1:1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'publish\.endpointt'"):
        load_config(path)


def test_bad_values_are_named() -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.policy must be one of"):
        load_config(None, ["sources[0].policy=latest"])
    with pytest.raises(ConfigError, match=r"key 'sources\[0\]\.width' must be an integer"):
        load_config(None, ["sources[0].width=wide"])
    with pytest.raises(ConfigError, match=r"key 'engine\.backend' must be one of auto, torch, onnxruntime"):
        load_config(None, ["engine.backend=cuda"])
    with pytest.raises(ConfigError, match=r"key 'publish\.encoding' must be one of raw, jpeg"):
        load_config(None, ["publish.encoding=png"])
    with pytest.raises(ConfigError, match=r"key 'noise\.correlation' must be one of auto, white, correlated"):
        load_config(None, ["noise.correlation=maybe"])
    assert load_config(None, ["noise.correlation=white"]).noise.correlation is Correlation.WHITE
    engine = load_config(None, ["engine.backend=onnxruntime", "engine.precision=bf16"]).engine
    assert engine.backend is Backend.ONNXRUNTIME and engine.precision is Precision.BF16
    with pytest.raises(ValueError, match=r"engine\.precision must be one of fp32, fp16, bf16, got 'int8'"):
        EngineConfig(precision="int8")
    assert load_config(None, []).noise.correlation is Correlation.AUTO


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("metrics.port=99999", r"metrics\.port must be 0\.\.65535"),
        ("publish.endpoint=tcp://127.0.0.1:70000", r"publish\.endpoint port must be 1\.\.65535"),
        ("duration_s=-1", r"duration_s must be >= 0"),
        ("log_level=CHATTY", r"log_level must be one of"),
        ("sources[0].noise_sigma=-5", r"sources\[0\]\.noise_sigma must be in 0\.\.255"),
        ("sources[0].ring_slots=0", r"sources\[0\]\.ring_slots must be >= 1"),
        ("publish.sndhwm=0", r"publish\.sndhwm must be >= 1"),
        ("outputs.rtsp.port=0", r"outputs\.rtsp\.port must be 1\.\.65535"),
        ("adapt.history_frames=4", r"adapt\.history_frames must be >= 2 x adapt\.frames"),
    ],
)
def test_out_of_range_values_name_their_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(None, [override])


def test_set_overrides_are_typed_and_frozen() -> None:
    cfg = load_config(REPO / "configs" / "default.yaml",
                      ["sources[0].width=64", "sources.0.pace=true", "publish.sndhwm=2", "engine.checkpoint=123",
                       "noise.sigma=10"])
    src = cfg.sources[0]
    got = (src.width, src.pace, cfg.publish.sndhwm, cfg.engine.checkpoint, cfg.noise.sigma)
    assert got == (64, True, 2, "123", 10.0)
    assert src.ring_policy == "drop_oldest"  # a paced synthetic source is live
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lookahead = 3  # type: ignore[misc]


def test_topics_must_not_overlap() -> None:
    with pytest.raises(ConfigError, match="overlap"):
        load_config(None, ["sources=[{id: cam1}, {id: cam10}]"])


def test_run_pipeline_unknown_key_exits_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  - id: a\n    urll: x\n")
    proc = subprocess.run([sys.executable, "run_pipeline.py", "--config", str(path)], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown key 'sources[0].urll'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_streams_noise_settings_take_what_its_source_says_of_compression(tmp_path: Path) -> None:
    import av
    import numpy as np

    from pipeline.build import stream_noise
    from stbn.noise_estimation import Compression

    for name, codec, pix_fmt in (("lossy.mp4", "libx264", "yuv420p"), ("lossless.mkv", "ffv1", "bgr0")):
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = 32, 32, pix_fmt
            for packet in [*stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), "rgb24")),
                           *stream.encode()]:  # fmt: skip
                container.mux(packet)
    lossy, lossless = tmp_path / "lossy.mp4", tmp_path / "lossless.mkv"
    sources = (f"sources=[{{id: a, kind: rtsp, uri: 'rtsp://127.0.0.1:1/x'}}, {{id: b, kind: synthetic}}, "
               f"{{id: c, kind: file, uri: '{lossy}'}}, {{id: d, kind: file, uri: '{lossless}'}}]")  # fmt: skip
    cfg = load_config(None, [sources])
    assert stream_noise(cfg.noise, cfg.sources[0]).compression is Compression.LOSSY
    assert stream_noise(cfg.noise, cfg.sources[1]).compression is Compression.UNKNOWN
    assert stream_noise(cfg.noise, cfg.sources[2]).compression is Compression.LOSSY  # a file says its codec
    assert stream_noise(cfg.noise, cfg.sources[3]).compression is Compression.NONE
    said = load_config(None, ["noise.compression=none", "sources=[{id: a, kind: rtsp, uri: 'rtsp://127.0.0.1:1/x'}]"])
    assert stream_noise(said.noise, said.sources[0]).compression is Compression.NONE  # the config wins
