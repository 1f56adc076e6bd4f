"""Real Ray processes for the cluster tests: a head and a worker node started with ``ray start`` on this
machine (each in its own process group, so that a test can kill a node), the test process as driver."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import stbn

ray = pytest.importorskip("ray", reason="the cluster tests need Ray (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parents[2]
RAY_CLI = Path(sys.executable).with_name("ray")

# Ray marks a node dead after health_check_failure_threshold missed checks, period_ms apart (15 s by
# default); the tests shorten that so that a killed node is noticed within about 2 s
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["RAY_AUTH_MODE"] = "disabled"  # loopback-only test clusters; a token would have to be shared
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env | FAST_NODE_DEATH


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def node_ports(ports: list[int]) -> list[str]:
    names = ("--node-manager-port", "--object-manager-port", "--metrics-export-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port")  # fmt: skip
    return [x for name, port in zip(names, ports) for x in (name, str(port))]


@dataclass
class RayNode:
    process: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """The whole node at once (raylet, its workers and actors): as a machine that goes away."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@dataclass
class TwoNodeCluster:
    address: str
    head: RayNode
    worker: RayNode
    worker_node_id: str


def _start_node(args: list[str], log: Path, env: dict[str, str]) -> RayNode:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(RAY_CLI), "start", "--block", "--disable-usage-stats", "--object-store-memory", "100000000", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    return RayNode(process, log)


def _wait_for(condition: object, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.25)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise TimeoutError(f"{what} within {timeout:.0f} s\n{tails}")


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[TwoNodeCluster]:
    """A head (2 CPUs) and a worker node (1 CPU) on this machine; the test process joins as driver."""
    env = ray_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", *FAST_NODE_DEATH)})
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths live under it
    ports = free_ports(13)
    address = f"127.0.0.1:{ports[0]}"
    nodes: list[RayNode] = []
    try:
        head = _start_node(
            ["--head", "--node-ip-address", "127.0.0.1", "--port", str(ports[0]), "--num-cpus", "2",
             "--include-dashboard", "false", "--temp-dir", str(temp / "t"), *node_ports(ports[1:7]),
             "--min-worker-port", "0", "--max-worker-port", "0"],
            temp / "head.log", env,
        )  # fmt: skip
        nodes.append(head)

        def gcs_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", ports[0])) == 0

        _wait_for(gcs_up, 60, "the head's GCS did not listen", [head.log])
        ray.init(address=address, logging_level="WARNING")
        before = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        worker = _start_node(
            ["--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1", *node_ports(ports[7:13]),
             "--min-worker-port", "0", "--max-worker-port", "0"],
            temp / "worker.log", env,
        )  # fmt: skip
        nodes.append(worker)
        _wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 60, "the worker node did not join",
                  [head.log, worker.log])  # fmt: skip
        worker_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] not in before)
        yield TwoNodeCluster(address, head, worker, worker_id)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):
            if node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGTERM)
                try:
                    node.process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(node.process.pid, signal.SIGKILL)
                    node.process.wait(10)
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def cluster_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "stbn-cpu-rt-random.pt"
    stbn.save_checkpoint(path, stbn.build_model("cpu-rt"), preset="cpu-rt")
    return path
