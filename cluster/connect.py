"""Joining (or starting) a Ray cluster for one run, and leaving it."""

from __future__ import annotations

import contextlib
import enum
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.config import CLUSTER_ADDRESS

log = logging.getLogger("cluster")
REACH_TIMEOUT_S = 5.0  # a head that does not accept a connection within this is reported, not waited for


class ClusterUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached."""


class AddressKind(enum.Enum):
    LOCAL = "local"  # a Ray instance started for this run on this machine, stopped at its end
    AUTO = "auto"  # the cluster this machine belongs to (RAY_ADDRESS, or a `ray start` here)
    HEAD = "head"  # HOST:PORT, a cluster head's GCS address
    CLIENT = "client"  # ray://HOST:PORT, through Ray Client


@dataclass(frozen=True)
class ClusterAddress:
    kind: AddressKind
    address: str | None  # what ray.init gets (None: start a local instance)

    @classmethod
    def parse(cls, text: str) -> ClusterAddress:
        """One of pipeline.config.CLUSTER_ADDRESS's forms, or a ValueError saying which are."""
        text = text.strip()
        if not CLUSTER_ADDRESS.match(text):
            raise ValueError(f"--cluster must be local, auto, HOST:PORT or ray://HOST:PORT, got {text!r}")
        if text == "local":
            return cls(AddressKind.LOCAL, None)
        if text == "auto":
            return cls(AddressKind.AUTO, "auto")
        return cls(AddressKind.CLIENT if text.startswith("ray://") else AddressKind.HEAD, text)

    def check_reachable(self) -> None:
        """A HOST:PORT that accepts no connection is an error now (Ray itself retries for minutes)."""
        if self.kind not in (AddressKind.HEAD, AddressKind.CLIENT):
            return
        host, port = self.address.removeprefix("ray://").rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S):
                pass
        except OSError as exc:
            raise ClusterUnavailable(
                f"nothing answers at {host}:{port} ({exc.strerror or exc}); is `ray start --head` running there?"
            ) from None


def first_line(exc: BaseException) -> str:
    """An error's first line (Ray's carry a remote traceback below it)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable(
            "the cluster needs Ray: pip install 'stbn-stream[cluster]' (or pip install ray)"
        ) from None
    return ray


@contextlib.contextmanager
def connected(address: str) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address`` for the block; a local instance started here is
    stopped at its end, a cluster joined is left running."""
    ray = import_ray()
    where = ClusterAddress.parse(address)
    if ray.is_initialized():  # an embedding program (a test, a notebook) connected already
        yield ray
        return
    where.check_reachable()
    log.info("connecting to Ray (%s)", address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if where.kind is AddressKind.LOCAL:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=where.address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnavailable(f"cannot reach the Ray cluster at {address}: {exc}") from None
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("Ray: %d node(s), %s", len(nodes), ray.cluster_resources())
        yield ray
    finally:
        ray.shutdown()
