"""A Ray cluster of several nodes on this one machine (``ray start`` head and workers, each in its own
process group so that one can be killed as a machine that goes away): for trying the cluster layer,
its tests and bench/cluster_scaling.py. A real site runs ``ray start`` on each machine instead."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.connect import ClusterUnavailable

# Ray marks a node dead after health_check_failure_threshold missed checks, period_ms apart (about 15 s
# by default); these notice a killed node within about 2 s
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
NODE_LABEL = "local_cluster_"  # + head / worker0 ...: a resource that names each node
_NODE_PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
)


def local_cluster_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the nodes (and of a driver that joins them): no token authentication (the
    nodes listen on this machine only; a token would have to be shared), no usage stats, fast
    detection of a lost node."""
    env = dict(os.environ if base is None else base)
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env | FAST_NODE_DEATH


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LocalNode:
    process: subprocess.Popen
    log: Path
    node_id: str = ""

    def kill(self) -> None:
        """The whole node at once (raylet and its object store; its workers notice and exit)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class LocalCluster:
    """``with LocalCluster(head_cpus=2, worker_cpus=(1,)) as c: ray.init(address=c.address)``."""

    head_cpus: int = 2
    worker_cpus: tuple[int, ...] = (1,)
    env: dict[str, str] = field(default_factory=local_cluster_env)
    start_timeout_s: float = 60.0
    address: str = ""
    head: LocalNode | None = None
    workers: list[LocalNode] = field(default_factory=list)
    _temp: Path | None = None

    def __enter__(self) -> LocalCluster:
        self._temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths live under it
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        ports = _free_ports(1 + 6 * (1 + len(self.worker_cpus)))
        self.address = f"127.0.0.1:{ports[0]}"
        self.head = self._node(
            ["--head", "--port", str(ports[0]), "--num-cpus", str(self.head_cpus), "--include-dashboard", "false",
             "--temp-dir", str(self._temp / "t"), *self._ports(ports[1:7])], "head",
        )  # fmt: skip

        def gcs_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", ports[0])) == 0

        self._wait(gcs_up, "the head's GCS to listen")
        for i, cpus in enumerate(self.worker_cpus):
            own = ports[7 + 6 * i : 13 + 6 * i]
            args = ["--address", self.address, "--num-cpus", str(cpus), *self._ports(own)]
            self.workers.append(self._node(args, f"worker{i}"))

    def _ports(self, ports: list[int]) -> list[str]:
        flags = [x for name, port in zip(_NODE_PORT_FLAGS, ports) for x in (name, str(port))]
        return [*flags, "--min-worker-port", "0", "--max-worker-port", "0"]

    def _node(self, args: list[str], name: str) -> LocalNode:
        """A node labelled by a resource of its name (how :meth:`wait_for_nodes` tells them apart:
        they all have this machine's address)."""
        log = self._temp / f"{name}.log"
        args = [*args, "--resources", json.dumps({f"{NODE_LABEL}{name}": 1})]
        ray_cli = Path(sys.executable).with_name("ray")
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(ray_cli), "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                 "--object-store-memory", "100000000", *args],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )  # fmt: skip
        return LocalNode(process, log)

    def wait_for_nodes(self, ray: Any) -> None:
        """Once the driver has joined (``ray.init(address=self.address)``): every node alive, and each
        node's id known."""
        want = 1 + len(self.workers)
        self._wait(lambda: len([n for n in ray.nodes() if n["Alive"]]) == want, f"{want} nodes to join")
        alive = [n for n in ray.nodes() if n["Alive"]]
        for node, name in [(self.head, "head"), *((w, f"worker{i}") for i, w in enumerate(self.workers))]:
            node.node_id = next(n["NodeID"] for n in alive if f"{NODE_LABEL}{name}" in n["Resources"])

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.25)
        logs = [n.log for n in [self.head, *self.workers] if n is not None]
        tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
        raise ClusterUnavailable(f"waited {self.start_timeout_s:.0f} s for {what}\n{tails}")

    def close(self) -> None:
        for node in reversed([*self.workers, *([self.head] if self.head else [])]):
            node.stop()
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
