"""What every capture source is: open, read frame by frame, close; and the two errors that tell the
capture stage whether retrying can help."""

from __future__ import annotations

import abc
import logging
from pathlib import Path

import numpy as np

from pipeline.config import SourceConfig, SourceKind

log = logging.getLogger("pipeline.sources")

Frame = tuple[np.ndarray, "float | None"]


class SourceError(RuntimeError):
    """A source that cannot work as configured; retrying will not help."""


class SourceDisconnected(SourceError):
    """A source that failed to open in time or lost its connection; worth retrying."""


class Source(abc.ABC):
    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.description = f"{config.kind.value} source {config.id!r}"
        self.warnings: list[str] = []  # what the source noticed and reports at its end (a truncated file)
        if config.kind in (SourceKind.RTSP, SourceKind.CAMERA):
            self.description += f" ({config.uri})"

    @abc.abstractmethod
    def open(self) -> None:
        """Connect / open; raises SourceError or SourceDisconnected (within ``open_timeout_s``)."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """Next frame, None at the end of a finite stream; raises SourceDisconnected on loss."""

    def close(self) -> None:
        """Release the source (idempotent)."""

    def interrupt(self) -> None:
        """Wake a blocking ``read`` so that a stop request is seen quickly (best effort)."""


def check_path(path: str, what: str) -> None:
    if "%" not in path and not Path(path).exists():
        raise SourceError(f"{what}: no such file {path!r}")
