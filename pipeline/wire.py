"""The wire format of published frames, both ends: a 3-part ZeroMQ message [topic, header, payload].

- topic: the stream's topic (UTF-8), for SUB-side filtering;
- header: compact JSON with ``v`` (the version below), the frame record's header (stream, seq,
  epoch, pts, capture_ns, sigma, stage times ``t``), ``shape``, ``dtype``, ``encoding`` and
  publisher extras such as ``lookahead``;
- payload: the (H, W, 3) RGB uint8 image, raw bytes or a JPEG.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline import timecode
from pipeline.frame import FrameRecord

WIRE_VERSION = 1


class Encoding(str, enum.Enum):
    RAW = "raw"
    JPEG = "jpeg"


class WireFormatError(ValueError):
    """A message that does not follow the wire format."""


def encode(
    topic: str, record: FrameRecord, encoding: Encoding, jpeg_quality: int = 90, **extra: Any
) -> list[Any]:
    """The message parts for ``record`` (stamped as it should be seen by subscribers)."""
    image = record.image
    if encoding is Encoding.JPEG:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise WireFormatError("JPEG encoding failed")
        payload: Any = buf
    else:
        payload = np.ascontiguousarray(image)  # a fresh array per frame: never modified after send
    header = {"v": WIRE_VERSION, **record.header(), "shape": list(image.shape), "dtype": "uint8"}
    header.update(encoding=encoding.value, **extra)
    return [topic.encode(), json.dumps(header, separators=(",", ":")).encode(), payload]


@dataclass(frozen=True)
class ReceivedFrame:
    topic: str
    header: dict[str, Any]
    image: np.ndarray
    received_ns: int

    @property
    def stream(self) -> str:
        return str(self.header["stream"])

    @property
    def seq(self) -> int:
        return int(self.header["seq"])

    @property
    def age_ms(self) -> float:
        """Capture -> received (both wall clock; same host or synchronised clocks)."""
        return (self.received_ns - int(self.header["capture_ns"])) / 1e6

    def timecode_age_ms(self) -> float | None:
        """Source -> received, from the timestamp drawn into the frame (synthetic source)."""
        drawn = timecode.read(self.image)
        if drawn is None:
            return None
        received_ms = self.received_ns / 1e6
        return received_ms - timecode.unwrap(drawn, int(received_ms))


def decode(parts: list[Any], received_ns: int) -> ReceivedFrame:
    if len(parts) != 3:
        raise WireFormatError(f"expected 3 message parts [topic, header, payload], got {len(parts)}")
    topic, header_part, payload = parts
    try:
        header = json.loads(bytes(header_part))
    except ValueError as exc:
        raise WireFormatError(f"the header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("v") != WIRE_VERSION:
        version = header.get("v") if isinstance(header, dict) else None
        raise WireFormatError(f"unsupported wire version {version!r} (this client speaks {WIRE_VERSION})")
    buf = payload.buffer if hasattr(payload, "buffer") else payload
    name = bytes(topic).decode()
    try:
        if Encoding(header["encoding"]) is Encoding.RAW:
            return ReceivedFrame(name, header, np.frombuffer(buf, np.uint8).reshape(header["shape"]), received_ns)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"the payload does not match its header: {exc}") from exc
    bgr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise WireFormatError("the JPEG payload does not decode")
    return ReceivedFrame(name, header, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), received_ns)
