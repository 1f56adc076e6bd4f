"""Real Ray processes for the cluster tests: a head and a worker node started with ``ray start`` on this
machine (cluster.local: each node in its own process group, so that a test can kill one), the test
process as the driver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import stbn
from cluster.local import LocalCluster, local_cluster_env

ray = pytest.importorskip("ray", reason="the cluster tests need Ray (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parents[2]


def ray_env() -> dict[str, str]:
    """For a process that starts or joins a test cluster (a driver run as a subprocess)."""
    env = local_cluster_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[LocalCluster]:
    """A head (2 CPUs) and a worker node (1 CPU) on this machine; the test process joins as driver."""
    env = ray_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with LocalCluster(head_cpus=2, worker_cpus=(1,), env=env) as cluster:
            ray.init(address=cluster.address, logging_level="WARNING")
            try:
                cluster.wait_for_nodes(ray)
                yield cluster
            finally:
                ray.shutdown()
    finally:
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
