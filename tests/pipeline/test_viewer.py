"""The live viewer and the before/after page, in a real headless browser (Debian's chromium driven
by Playwright) against a running pipeline with a real RTSP source."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipeline.config import ViewerConfig
from pipeline.frame import FrameRecord
from pipeline.runner import Pipeline, PipelineError
from pipeline.viewer.compare import pick_frames
from pipeline.viewer.server import encode_preview, preview_size
from tests.pipeline.conftest import REPO, config, subprocess_env, write_video

SHIPPED = REPO / "weights" / "stbn-cpu-rt.pt"

# mean |difference| of horizontally adjacent pixels of a canvas: noise is high-frequency
ROUGHNESS_JS = """(sel) => {
  const c = document.querySelector(sel); const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let sum = 0, n = 0;
  for (let i = 0; i + 4 < d.length; i += 4) { if ((i / 4 + 1) % c.width === 0) continue;
    for (let k = 0; k < 3; k++) { sum += Math.abs(d[i + k] - d[i + 4 + k]); n++; } }
  return sum / n; }"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (scripts/setup.sh installs Debian's chromium when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield instance
        finally:
            instance.close()


def open_tab(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page, errors


def stream_view(page: Any, stream: str) -> dict[str, Any]:
    return page.evaluate(
        """(id) => { const s = window.stbnViewer.streams[id]; if (!s) return null;
        const c = (k) => s.el.querySelector("canvas." + k);
        return {seq: s.seq, previews: s.previews, state: s.stateName, stats: s.statsSeen, source: s.source,
                noisy: [c("noisy").width, c("noisy").height], denoised: [c("denoised").width, c("denoised").height],
                text: s.el.querySelector(".stats").innerText}; }""",
        stream,
    )


def wait_previews(page: Any, stream: str, count: int, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        "([id, n]) => { const s = window.stbnViewer.streams[id]; return s && s.previews >= n; }",
        arg=[stream, count], timeout=timeout_ms,
    )  # fmt: skip


def test_a_preview_message_holds_the_input_and_the_output_of_one_frame() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (90, 200, 3), dtype=np.uint8)
    clean = np.full_like(noisy, 120)
    record = FrameRecord("cam0", 7, None, 0, noisy).denoised_as(clean, 12.5)
    message = encode_preview(record, ViewerConfig(max_width=100))
    n = int.from_bytes(message[:4], "big")
    header = json.loads(message[4 : 4 + n])
    a, b = header["sizes"]
    assert (header["stream"], header["seq"], header["sigma"]) == ("cam0", 7, 12.5)
    assert len(message) == 4 + n + a + b
    images = [cv2.imdecode(np.frombuffer(message[s : s + k], np.uint8), cv2.IMREAD_COLOR)
              for s, k in ((4 + n, a), (4 + n + a, b))]  # fmt: skip
    assert [im.shape for im in images] == [(45, 100, 3)] * 2 and (header["width"], header["height"]) == (100, 45)
    assert images[0].std() > 15 and images[1].std() < 3  # the input's noise, the output's flat grey
    assert preview_size(1080, 1920, 640) == (360, 640) and preview_size(90, 160, 640) == (90, 160)
    with pytest.raises(ValueError, match="input frame"):
        encode_preview(FrameRecord("cam0", 1, None, 0, clean), ViewerConfig())


@pytest.mark.slow
def test_live_page_shows_every_stream_noisy_beside_denoised_and_a_lost_source(
    browser: Any, rtsp_server: Any, tmp_path: Path
) -> None:
    rtsp_server.stop()
    rtsp_server.args = ["--width", "192", "--height", "108", "--fps", "15", "--noise", "25"]
    rtsp_server.start()
    door = f"{{id: door, kind: rtsp, uri: '{rtsp_server.url()}', reconnect: {{initial_s: 0.5, max_s: 1}}}}"
    yard = "{id: yard, kind: synthetic, width: 160, height: 96, fps: 15, noise_sigma: 25, pace: true}"
    cfg = config(
        SHIPPED, tmp_path, f"sources=[{door}, {yard}]", "noise.mode=estimate", "lookahead=1",
        "publish.enabled=false", "viewer.enabled=true", "viewer.port=0", "viewer.max_fps=4",
    )  # fmt: skip
    pipeline = Pipeline(cfg)
    with pipeline.background() as run:
        url = f"http://127.0.0.1:{pipeline.viewer.port}/"
        tabs = [open_tab(browser, url) for _ in range(2)]  # two tabs at once
        for page, _ in tabs:
            for stream in ("door", "yard"):
                wait_previews(page, stream, 2)
        page = tabs[0][0]
        first = {s: stream_view(page, s) for s in ("door", "yard")}
        for stream, (w, h) in (("door", (192, 108)), ("yard", (160, 96))):
            view = first[stream]
            assert view["source"] == [w, h] and view["noisy"] == view["denoised"] == [w, h], view
            rough_noisy = page.evaluate(ROUGHNESS_JS, f"#stream-{stream} canvas.noisy")
            rough_denoised = page.evaluate(ROUGHNESS_JS, f"#stream-{stream} canvas.denoised")
            assert rough_denoised < 0.6 * rough_noisy, (stream, rough_noisy, rough_denoised)
        time.sleep(1.5)
        later = {s: stream_view(page, s) for s in ("door", "yard")}
        for stream in ("door", "yard"):  # frames advance, stats update
            assert later[stream]["seq"] > first[stream]["seq"] and later[stream]["stats"] > first[stream]["stats"]
            assert later[stream]["state"] == "running" and "frames/s" in later[stream]["text"]
        assert later["door"]["text"] != first["door"]["text"]
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)

        rtsp_server.stop()  # the camera goes away: shown within 2 s, the other stream goes on
        lost = time.monotonic()
        for tab, _ in tabs:
            tab.wait_for_function("() => window.stbnViewer.streams.door.stateName === 'reconnecting'", timeout=2500)
            badge = tab.inner_text("#stream-door .state")
            assert badge.lower() == "reconnecting", badge
        assert time.monotonic() - lost < 2.5 + 1.0  # both tabs
        yard = stream_view(page, "yard")["seq"]
        wait_previews(page, "yard", stream_view(page, "yard")["previews"] + 2, timeout_ms=5000)
        assert stream_view(page, "yard")["seq"] > yard
        run.stop.set()
        page.wait_for_function("() => window.stbnViewer.stopped", timeout=30_000)
        assert page.inner_text("#banner") == "the pipeline stopped"
        for _, tab_errors in tabs:
            assert tab_errors == [], tab_errors
    assert run.error is None, run.error
    counts = run.report["viewer"]
    for stream in ("door", "yard"):  # previews at max_fps, the rest passed over and counted
        assert counts[stream]["encoded"] >= 4 and counts[stream]["skipped_rate"] > 0, counts
    keep = os.environ.get("STBN_KEEP_VIEWER_SCREENSHOT")  # docs/images/viewer.png is kept from a passing run
    if keep:
        shutil.copy(tmp_path / "viewer.png", keep)


def test_viewer_token_guards_the_page_and_its_socket(browser: Any, checkpoint: Path, tmp_path: Path) -> None:
    cfg = config(
        checkpoint, tmp_path, "publish.enabled=false", "viewer.enabled=true", "viewer.port=0",
        "viewer.token=s3cret", "sources[0].width=64", "sources[0].height=48", "sources[0].pace=true",
    )  # fmt: skip
    pipeline = Pipeline(cfg)
    with pipeline.background():
        base = f"http://127.0.0.1:{pipeline.viewer.port}"
        for path in ("/", "/ws", "/api/streams", "/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(base + path, timeout=5)
            assert denied.value.code == 401
            assert b"<canvas" not in denied.value.read()
        stats = json.loads(urllib.request.urlopen(base + "/api/streams?token=s3cret", timeout=5).read())
        assert stats["streams"]["cam0"]["state"] in ("connecting", "running")
        page, errors = open_tab(browser, base + "/?token=s3cret")
        wait_previews(page, "cam0", 2)
        assert errors == []
        taken = config(checkpoint, tmp_path, "publish.enabled=false", "viewer.enabled=true",
                       f"viewer.port={pipeline.viewer.port}")  # fmt: skip
        with pytest.raises(PipelineError, match=f"viewer: cannot listen on 127.0.0.1:{pipeline.viewer.port}"):
            Pipeline(taken).run()


@pytest.mark.slow
def test_stbn_denoise_compare_writes_a_before_after_page(browser: Any, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, 20, width=96, height=64)
    out, html = tmp_path / "out.mp4", tmp_path / "pages" / "compare.html"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "denoise", str(clip), str(out), "--sigma", "15", "--no-progress",
         "--threads", "1", "--compare", str(html)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"before/after page {html}" in done.stdout and html.is_file()
    assert not list(html.parent.glob(".*partial"))
    page, errors = open_tab(browser, html.as_uri())
    page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    indices = page.eval_on_selector_all("figcaption", "els => els.map(e => e.textContent)")
    assert indices == [f"frame {i}" for i in pick_frames(20)]
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert sizes == [[96, 64]] * 2 * len(indices)
    page.fill("figure input[type=range]", "20")
    page.dispatch_event("figure input[type=range]", "input")
    assert page.eval_on_selector("figure img.noisy", "e => e.style.clipPath") == "inset(0px 80% 0px 0px)"
    assert errors == []
    assert pick_frames(None)[:3] == (0, 30, 60) and pick_frames(3) == (0, 1, 2) and pick_frames(0) == ()
