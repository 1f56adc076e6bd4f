"""Soak: the live pipeline on an RTSP stream whose server is killed and restarted periodically, with a
slow subscriber attached; memory, file descriptors and threads of the pipeline process at the start
and the end, and the frames lost outside the counted drops (must be 0).

    .venv/bin/python bench/soak.py --minutes 10 --fault-every 60      # the figures in docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) // 1024,
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }


def start_server(port: int, width: int, height: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, "scripts/rtsp_test_server.py", "--port", str(port), "--width", str(width),
           "--height", str(height), "--fps", "15"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("READY"):
        server.kill()
        raise RuntimeError(f"RTSP server did not start: {line!r}")
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fault-every", type=float, default=60.0, help="kill the RTSP server every S seconds")
    parser.add_argument("--outage", type=float, default=3.0, help="seconds before the server comes back")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--sample-every", type=float, default=30.0, help="RSS trace interval (s)")
    args = parser.parse_args()
    rtsp_port, pub_port = free_port(), free_port()
    out = Path(tempfile.mkdtemp(prefix="stbn-soak-"))
    server = start_server(rtsp_port, args.width, args.height)
    source = (
        f"{{id: cam, kind: rtsp, uri: 'rtsp://127.0.0.1:{rtsp_port}/test', backend: gstreamer, "
        "reconnect: {initial_s: 0.5, max_s: 2, factor: 2, fail_on_first_open: false}}"
    )
    cmd = [sys.executable, "run_pipeline.py", "--quiet", "--set", f"sources=[{source}]",
           "--set", "engine.backend=onnxruntime", "--set", "engine.threads=1", "--set", "lookahead=1",
           "--set", f"publish.endpoint=tcp://127.0.0.1:{pub_port}", "--set", f"report.dir={out}",
           "--set", "report.max_frames=200000"]  # fmt: skip
    pipeline = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    subscriber = subprocess.Popen(
        [sys.executable, "-m", "pipeline.subscribe", "--endpoint", f"tcp://127.0.0.1:{pub_port}", "--rcvhwm", "1",
         "--slow-ms", "150", "--max-age-ms", "1000", "--json", str(out / "sub.json")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    faults = 0
    trace: list[tuple[int, int, int]] = []  # (seconds since start, faults so far, RSS MiB)
    try:
        time.sleep(15)  # engine export, first connection, warm-up
        start = proc_stats(pipeline.pid)
        t0 = time.monotonic()
        t_end = t0 + args.minutes * 60
        next_fault = t0 + args.fault_every
        next_sample = t0
        while time.monotonic() < t_end and pipeline.poll() is None:
            time.sleep(1)
            if time.monotonic() >= next_sample:  # is memory growth stepwise at the faults, or steady?
                trace.append((round(time.monotonic() - t0), faults, proc_stats(pipeline.pid)["rss_mib"]))
                next_sample += args.sample_every
            if time.monotonic() >= next_fault:
                server.kill()
                server.wait()
                time.sleep(args.outage)
                server = start_server(rtsp_port, args.width, args.height)
                faults += 1
                next_fault = time.monotonic() + args.fault_every
        end = proc_stats(pipeline.pid)
        pipeline.send_signal(signal.SIGINT)
        _, stderr = pipeline.communicate(timeout=120)
    finally:
        for p in (pipeline, subscriber, server):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
    report = json.loads((out / "latency.json").read_text())
    stream = report["streams"]["cam"]
    lost = stream["captured"] - stream["frames_published"] - sum(stream["drops"].values())
    rows = [
        f"soak: {args.minutes:g} min, RTSP server killed every {args.fault_every:g} s for {args.outage:g} s "
        f"({faults} faults), slow subscriber (150 ms/frame, max age 1 s), {args.width}x{args.height} at 15 fps",
        "",
        "| | start (after 15 s) | end |",
        "|---|---:|---:|",
        *(f"| {k} | {start[k]} | {end[k]} |" for k in ("rss_mib", "fds", "threads")),
        "",
        f"exit code {pipeline.returncode}; captured {stream['captured']}, published {stream['frames_published']}, "
        f"ring drops {stream['drops']}, reconnects {stream['reconnects']}, frames lost outside counted drops: {lost}",
        "",
        "RSS trace (s since start: faults so far, MiB): "
        + ", ".join(f"{t}: {f}, {rss}" for t, f, rss in trace),
    ]
    print("\n".join(rows))
    if pipeline.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    return 0 if lost == 0 and pipeline.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
