"""Sources against real decoders: PyAV/OpenCV files, GStreamer pipelines, synthetic timecodes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import timecode
from pipeline.config import SourceConfig
from pipeline.sources import (
    Source,
    SourceDisconnected,
    SourceError,
    SyntheticSource,
    make_source,
)


def read_all(source: Source, limit: int = 1000) -> list[tuple[np.ndarray, float | None]]:
    source.open()
    try:
        out = []
        while len(out) < limit:
            got = source.read()
            if got is None:
                break
            out.append(got)
        return out
    finally:
        source.close()


def test_timecode_round_trip_survives_noise() -> None:
    rng = np.random.default_rng(0)
    for value in (0, 1, 1_790_000_000_123, (1 << 42) - 1):
        image = np.full((48, 64, 3), 128, np.uint8)
        timecode.draw(image, value)
        noisy = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
        assert timecode.read(noisy) == value
    assert timecode.read(np.full((48, 64, 3), 128, np.uint8)) is None
    assert timecode.unwrap(5, (1 << 42) * 3 + 7) == (1 << 42) * 3 + 5


def test_synthetic_source_draws_capture_time_and_ends() -> None:
    src = SyntheticSource(SourceConfig(id="s", width=64, height=48, frames=5, pace=False))
    frames = read_all(src)
    assert len(frames) == 5
    now_ms = time.time_ns() // 1_000_000
    codes = [timecode.read(f) for f, _ in frames]
    assert all(c is not None and 0 <= now_ms - timecode.unwrap(c, now_ms) < 5000 for c in codes)
    assert [pts for _, pts in frames] == pytest.approx([k / 30 for k in range(5)])


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_file_source_decodes_every_frame(video: Path, backend: str) -> None:
    frames = read_all(make_source(SourceConfig(id="f", kind="file", uri=str(video), backend=backend, pace=False)))
    assert [timecode.read(f) for f, _ in frames] == list(range(12))
    assert frames[0][0].shape == (48, 64, 3)
    pts = [p for _, p in frames]
    assert pts == sorted(pts) and pts[1] - pts[0] == pytest.approx(1 / 30, abs=1e-3)


def test_file_source_loops_and_paces(video: Path) -> None:
    src = make_source(SourceConfig(id="f", kind="file", uri=str(video), loop=True, pace=True))
    t0 = time.monotonic()
    frames = read_all(src, limit=30)
    elapsed = time.monotonic() - t0
    assert [timecode.read(f) for f, _ in frames] == [k % 12 for k in range(30)]
    pts = [p for _, p in frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))  # pts keep increasing across loops
    assert elapsed >= 29 / 30 - 0.05  # paced to 30 fps


def test_file_not_video_and_missing_path_are_clear(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError, match=r"is not a (decodable )?video"):
        read_all(make_source(SourceConfig(id="f", kind="file", uri=str(text))))
    with pytest.raises(SourceError, match="no such file"):
        read_all(make_source(SourceConfig(id="f", kind="file", uri=str(tmp_path / "missing.mp4"))))


def test_rtsp_unknown_host_is_clear() -> None:
    with pytest.raises(SourceError, match=r"unknown host 'no-such-host\.invalid'"):
        make_source(SourceConfig(id="r", kind="rtsp", uri="rtsp://no-such-host.invalid:8554/test"))


def test_camera_missing_device_is_reported() -> None:
    src = make_source(SourceConfig(id="c", kind="camera", uri="/dev/video-does-not-exist"))
    with pytest.raises(SourceDisconnected, match="no camera device"):
        src.open()


def test_gstreamer_pipeline_source() -> None:
    pytest.importorskip("gi")
    launch = ("videotestsrc num-buffers=6 pattern=ball ! video/x-raw,width=66,height=50 ! videoconvert "
              "! video/x-raw,format=RGB ! appsink name=sink")
    frames = read_all(make_source(SourceConfig(id="g", kind="gstreamer", uri=launch)))
    assert len(frames) == 6
    assert frames[0][0].shape == (50, 66, 3)  # row stride padding is removed
    assert frames[0][0].std() > 10
    with pytest.raises(SourceError, match=r"bad GStreamer pipeline"):
        read_all(make_source(SourceConfig(id="g", kind="gstreamer", uri="nosuchelement ! appsink")))


def test_every_kind_a_config_accepts_has_a_source_and_backends_pick_theirs() -> None:
    from pipeline.config import SOURCE_KINDS, SourceConfig
    from pipeline.sources import SOURCES, OpenCVSource, PyAVFileSource

    assert all((kind, "auto") in SOURCES for kind in SOURCE_KINDS)
    assert set(kind for kind, _ in SOURCES) == set(SOURCE_KINDS)
    file_cfg = {"kind": "file", "uri": __file__}
    assert isinstance(make_source(SourceConfig(**file_cfg)), PyAVFileSource)
    assert isinstance(make_source(SourceConfig(**file_cfg, backend="opencv")), OpenCVSource)
    with pytest.raises(SourceError, match="unknown host"):
        make_source(SourceConfig(kind="rtsp", uri="rtsp://no-such-host.invalid/x", backend="pyav"))
