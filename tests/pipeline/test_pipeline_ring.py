"""Ring buffer: preallocated slots, the three overflow policies, drops per reason, threads."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.frame import FrameRecord
from pipeline.ring import OverflowPolicy, RingBuffer, RingClosed


def test_drop_oldest_keeps_newest_and_counts() -> None:
    ring: RingBuffer[int] = RingBuffer(3, "drop_oldest")
    for i in range(10):
        assert ring.put(i)
    assert ring.drops == {"drop_oldest": 7, "drop_newest": 0}
    assert [ring.get(0), ring.get(0), ring.get(0)] == [7, 8, 9]
    assert ring.get(timeout=0.01) is None
    assert len(ring._slots) == 3  # fixed slots, allocated up front


def test_drop_newest_keeps_oldest_and_counts() -> None:
    ring: RingBuffer[int] = RingBuffer(2, "drop_newest")
    stored = [ring.put(i) for i in range(5)]
    assert stored == [True, True, False, False, False]
    assert ring.drops == {"drop_oldest": 0, "drop_newest": 3}
    assert [ring.get(0), ring.get(0)] == [0, 1]


def test_block_waits_for_space_and_loses_nothing() -> None:
    ring: RingBuffer[int] = RingBuffer(2, "block")
    got: list[int] = []

    def consume() -> None:
        while True:
            try:
                item = ring.get(timeout=1)
            except RingClosed:
                return
            if item is not None:
                got.append(item)
                time.sleep(0.002)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        assert ring.put(i)
    ring.close()
    t.join(5)
    assert got == list(range(200))
    assert ring.dropped == 0
    assert ring.high_water <= 2


def test_block_put_times_out_when_full() -> None:
    ring: RingBuffer[int] = RingBuffer(1, "block")
    ring.put(1)
    t0 = time.monotonic()
    assert ring.put(2, timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.04


def test_closed_ring_drains_then_raises() -> None:
    ring: RingBuffer[int] = RingBuffer(4, "block")
    ring.put(1)
    ring.close()
    with pytest.raises(RingClosed):
        ring.put(2)
    assert ring.get() == 1
    with pytest.raises(RingClosed):
        ring.get()


def test_bad_policy_and_slots_are_errors() -> None:
    with pytest.raises(ValueError, match="overflow policy 'latest'"):
        RingBuffer(2, "latest")
    with pytest.raises(ValueError, match="slots"):
        RingBuffer(0)


def test_frame_record_is_frozen_and_stamped_in_order() -> None:
    import numpy as np

    rec = FrameRecord("cam0", 3, 0.1, 100, np.zeros((2, 2, 3), np.uint8)).stamped("captured", 100)
    rec2 = rec.stamped("queued", 150)
    assert rec.stamps == (("captured", 100),)
    assert rec2.times() == {"captured": 100, "queued": 150}
    with pytest.raises(AttributeError):
        rec.seq = 4  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown stage"):
        rec.stamped("decoded")
    header = rec2.header()
    assert header["stream"] == "cam0" and header["seq"] == 3 and header["t"]["queued"] == 150


def test_policies_are_named_by_an_enum_and_strings_are_refused_by_name() -> None:
    ring: RingBuffer[int] = RingBuffer(1, "drop_newest")
    assert ring.policy is OverflowPolicy.DROP_NEWEST and ring.stats().to_json()["policy"] == "drop_newest"
    with pytest.raises(ValueError, match="unknown overflow policy 'latest'"):
        RingBuffer(1, "latest")


def test_stream_states_move_only_along_the_written_transitions() -> None:
    from pipeline.stages import StreamState, StreamStatus

    state = StreamState("cam")
    state.set(StreamStatus.RUNNING)
    state.set(StreamStatus.RECONNECTING, "lost")
    state.set(StreamStatus.FAILED, "gave up")
    with pytest.raises(RuntimeError, match="no transition failed -> ended"):
        state.set(StreamStatus.ENDED)  # a failure is never hidden by a later end
    snapshot = state.snapshot()
    assert snapshot.state is StreamStatus.FAILED and snapshot.to_json()["state"] == "failed"
    assert snapshot.error == "gave up"


def test_drain_blocks_between_items_and_answers_wake_stop_and_close() -> None:
    ring: RingBuffer[int] = RingBuffer(4, "block")
    stop = threading.Event()
    seen: list[int | None] = []
    done = threading.Event()

    def consume() -> None:
        for item in ring.drain(stop):
            seen.append(item)
        done.set()

    ring.put(1)
    ring.put(2)
    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.2)
    assert seen == [1, 2, None]  # the items, then one "ran empty", then it blocks (no polling)
    ring.wake()
    time.sleep(0.1)
    assert seen == [1, 2, None, None]  # a wake is answered once
    ring.put(3)
    time.sleep(0.1)
    assert seen[-2:] == [3, None]
    stop.set()
    ring.wake()
    assert done.wait(2)
    thread.join()

    closing: RingBuffer[int] = RingBuffer(4, "block")
    closing.put(7)
    closing.close()
    assert [x for x in closing.drain(threading.Event()) if x is not None] == [7]  # drained, then ends
