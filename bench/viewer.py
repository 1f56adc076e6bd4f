"""What the live viewer costs: pipeline frames/s with the viewer page open in two browser tabs
against the viewer off, in one run (interleaved), on the same machine as the browser. Prints a table.

    .venv/bin/python bench/viewer.py [--size 640 360] [--seconds 20] [--repeats 3] [--backend auto]

The source is the synthetic one unpaced (as fast as the engine goes: throughput is what a preview
could take away); frames/s is counted over the steady window, from ``--settle`` seconds after the
start (the tabs have connected by then) to the end, from the per-frame publish times. The browser
is Debian's chromium, headless, driven by Playwright (the dev extra), rendering every preview.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from pipeline.config import ViewerConfig, load_config
from pipeline.runner import Pipeline
from stbn.weights import shipped_checkpoint

REPO = Path(__file__).resolve().parents[1]


def steady_fps(pipeline: Pipeline, stream: str, settle_s: float) -> float:
    rows = pipeline.profiler.rows(stream)
    published = rows[:, 5] / 1e9
    steady = published[published >= published.min() + settle_s]
    return (len(steady) - 1) / (steady.max() - steady.min())


def run_once(args: argparse.Namespace, browser: Any | None) -> tuple[float, dict[str, Any] | None]:
    w, h = args.size
    config = load_config(None, [
        f"engine.backend={args.backend}", f"engine.checkpoint={shipped_checkpoint()}",
        f"engine.threads={args.threads}", f"lookahead={args.lookahead}", "publish.enabled=false", "report.dir=",
        f"sources=[{{id: bench, kind: synthetic, width: {w}, height: {h}, pace: false, policy: block}}]",
        f"viewer.enabled={browser is not None}", "viewer.port=0", f"viewer.max_fps={args.preview_fps}",
    ])  # fmt: skip
    pipeline = Pipeline(config)
    tabs = []
    with pipeline.background() as run:
        if browser is not None:
            for _ in range(2):
                tabs.append(browser.new_page())
                tabs[-1].goto(f"http://127.0.0.1:{pipeline.viewer.port}/")
        time.sleep(args.seconds)
        run.stop.set()
    previews = None
    if browser is not None:
        previews = {"tab_previews": [t.evaluate("() => window.stbnViewer.streams.bench.previews") for t in tabs]}
        previews |= run.report["viewer"]["bench"]
        for tab in tabs:
            tab.close()
    return steady_fps(pipeline, "bench", args.settle), previews


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"))
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lookahead", type=int, default=2)
    parser.add_argument("--preview-fps", type=float, default=ViewerConfig.max_fps)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("bench/viewer.py needs chromium (Debian: apt-get install chromium)")
    closed, opened, counts = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for i in range(args.repeats):
            fps, _ = run_once(args, None)
            closed.append(fps)
            fps, previews = run_once(args, browser)
            opened.append(fps)
            counts.append(previews)
            print(f"repeat {i + 1}: viewer off {closed[-1]:.2f} frames/s, two tabs {opened[-1]:.2f} ({previews})")
        browser.close()
    off, on = statistics.median(closed), statistics.median(opened)
    w, h = args.size
    machine = platform.processor() or platform.machine()
    print(f"\n{machine}, {args.backend} backend, {args.threads} threads, {w}x{h} L={args.lookahead}, previews at "
          f"most {args.preview_fps:g}/s, {args.repeats} interleaved repeats\n")  # fmt: skip
    print("| viewer | frames/s (median) | runs |\n|---|---:|---|")
    print(f"| off | {off:.2f} | {', '.join(f'{x:.2f}' for x in closed)} |")
    print(f"| open in two tabs | {on:.2f} | {', '.join(f'{x:.2f}' for x in opened)} |")
    print(f"\nratio open/off: {on / off:.3f} ({100 * (on / off - 1):+.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
