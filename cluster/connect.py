"""Joining (or starting) a Ray cluster for one run, and leaving it."""

from __future__ import annotations

import contextlib
import enum
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("cluster")

_HOST_PORT = re.compile(r"^(ray://)?[A-Za-z0-9.\-]+:\d{1,5}$")


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
        text = text.strip()
        if text == "local":
            return cls(AddressKind.LOCAL, None)
        if text == "auto":
            return cls(AddressKind.AUTO, "auto")
        if _HOST_PORT.match(text):
            return cls(AddressKind.CLIENT if text.startswith("ray://") else AddressKind.HEAD, text)
        raise ValueError(f"cluster address must be local, auto, HOST:PORT or ray://HOST:PORT, got {text!r}")


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
def connected(address: str, local_cpus: int | None = None) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address`` for the block; a local instance started here is
    stopped at its end, a cluster joined is left running."""
    ray = import_ray()
    where = ClusterAddress.parse(address)
    if ray.is_initialized():  # an embedding program (a test, a notebook) connected already
        yield ray
        return
    log.info("connecting to Ray (%s); a cluster that does not answer fails within a minute", address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    if where.kind is AddressKind.LOCAL:
        kwargs |= {"num_cpus": local_cpus, "include_dashboard": False}
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
