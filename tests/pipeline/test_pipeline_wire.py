"""The wire format round trip: what the publisher encodes, the subscriber decodes, for both
encodings; malformed messages are named errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.frame import STAGES, FrameRecord
from pipeline.wire import WIRE_VERSION, Encoding, WireFormatError, decode, encode


def _record() -> FrameRecord:
    yy, xx = np.mgrid[0:24, 0:40]
    image = np.stack([xx * 6, yy * 10, 255 - xx * 6], axis=-1).astype(np.uint8)  # smooth: JPEG keeps it
    record = FrameRecord("cam0", 7, 0.25, 1_000, image, epoch=2, sigma=21.5)
    for i, stage in enumerate(STAGES):
        record = record.stamped(stage, 1_000 + i)
    return record


@pytest.mark.parametrize("encoding", list(Encoding))
def test_a_published_frame_decodes_to_the_same_frame(encoding: Encoding) -> None:
    record = _record()
    parts = encode("cam0", record, encoding, jpeg_quality=95, lookahead=2)
    frame = decode(parts, received_ns=3_000_000)
    assert (frame.topic, frame.stream, frame.seq) == ("cam0", "cam0", 7)
    assert frame.header["v"] == WIRE_VERSION and frame.header["encoding"] == encoding.value
    assert frame.header["epoch"] == 2 and frame.header["sigma"] == 21.5 and frame.header["lookahead"] == 2
    assert frame.header["t"] == record.times() and frame.header["pts"] == 0.25
    assert frame.age_ms == pytest.approx(2.999)
    assert frame.image.shape == record.image.shape
    if encoding is Encoding.RAW:
        assert np.array_equal(frame.image, record.image)
    else:  # lossy, but the same picture
        assert np.abs(frame.image.astype(int) - record.image.astype(int)).mean() < 3


def test_malformed_messages_are_named() -> None:
    topic, header, payload = encode("cam0", _record(), Encoding.RAW)
    with pytest.raises(WireFormatError, match="3 message parts"):
        decode([topic, header], 0)
    with pytest.raises(WireFormatError, match="not JSON"):
        decode([topic, b"{", payload], 0)
    newer = json.dumps({**json.loads(header), "v": WIRE_VERSION + 1}).encode()
    with pytest.raises(WireFormatError, match="unsupported wire version"):
        decode([topic, newer, payload], 0)
    with pytest.raises(WireFormatError, match="does not match its header"):
        decode([topic, header, payload[:10]], 0)
    jpeg = json.dumps({**json.loads(header), "encoding": "jpeg"}).encode()
    with pytest.raises(WireFormatError, match="does not decode"):
        decode([topic, jpeg, b"not a jpeg"], 0)
