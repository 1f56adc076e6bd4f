"""A bounded, preallocated, thread-safe ring buffer with a named overflow policy."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

class OverflowPolicy(str, enum.Enum):
    """What a full ring does with a new item."""

    DROP_OLDEST = "drop_oldest"  # discard the oldest item to take the new one (live sources)
    BLOCK = "block"  # the producer waits for space (files: nothing lost)
    DROP_NEWEST = "drop_newest"  # discard the new item


POLICIES = tuple(p.value for p in OverflowPolicy)


@dataclass(frozen=True)
class RingStats:
    slots: int
    policy: OverflowPolicy
    depth: int  # items waiting now
    high_water: int
    puts: int
    gets: int
    drops: dict[str, int]  # per dropping policy

    def to_json(self) -> dict[str, Any]:
        return {
            "slots": self.slots,
            "policy": self.policy.value,
            "depth": self.depth,
            "high_water": self.high_water,
            "puts": self.puts,
            "gets": self.gets,
            "drops": dict(self.drops),
        }


class RingClosed(Exception):
    """get() on a closed and empty ring, or put() on a closed ring."""


class RingBuffer(Generic[T]):
    """Fixed number of slots allocated up front; ``put``/``get`` from any threads.

    Drops are counted per reason in :attr:`drops` (keys are the policy names that drop).
    """

    def __init__(
        self, slots: int, policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST, name: str = "ring"
    ) -> None:
        if slots < 1:
            raise ValueError(f"ring slots must be >= 1, got {slots}")
        if policy not in POLICIES:
            raise ValueError(f"unknown overflow policy {policy!r}; expected one of {POLICIES}")
        self.name = name
        self.policy = OverflowPolicy(policy)
        self.capacity = slots
        self._slots: list[T | None] = [None] * slots
        self._head = 0  # index of the oldest item
        self._count = 0
        self._closed = False
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.drops: dict[str, int] = {"drop_oldest": 0, "drop_newest": 0}
        self.puts = 0
        self.gets = 0
        self.high_water = 0
        self._wakeups = 0  # wake() calls: a consumer blocked in drain() looks up

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``; returns False if it was not stored (dropped as newest, or timed out)."""
        with self._lock:
            if self._closed:
                raise RingClosed(f"{self.name} is closed")
            if self._count == self.capacity:
                if self.policy is OverflowPolicy.DROP_NEWEST:
                    self.drops["drop_newest"] += 1
                    return False
                if self.policy is OverflowPolicy.DROP_OLDEST:
                    self._slots[self._head] = None
                    self._head = (self._head + 1) % self.capacity
                    self._count -= 1
                    self.drops["drop_oldest"] += 1
                else:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while self._count == self.capacity and not self._closed:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return False
                        self._not_full.wait(remaining)
                    if self._closed:
                        raise RingClosed(f"{self.name} is closed")
            self._slots[(self._head + self._count) % self.capacity] = item
            self._count += 1
            self.puts += 1
            self.high_water = max(self.high_water, self._count)
            self._not_empty.notify()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """Oldest item; None on timeout; raises RingClosed once closed and drained."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._count == 0:
                if self._closed:
                    raise RingClosed(f"{self.name} is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._not_empty.wait(remaining)
            return self._take()

    def _take(self) -> T | None:
        """Remove and return the oldest item (the lock held, the ring not empty)."""
        item = self._slots[self._head]
        self._slots[self._head] = None
        self._head = (self._head + 1) % self.capacity
        self._count -= 1
        self.gets += 1
        self._not_full.notify()
        return item

    def wake(self) -> None:
        """Wake the consumers blocked in :meth:`drain` (a stop request, a change they must see)."""
        with self._lock:
            self._wakeups += 1
            self._not_empty.notify_all()

    def drain(self, stop: threading.Event) -> Iterator[T | None]:
        """Items as they arrive, blocking in between without polling; None once each time the ring
        runs empty and after each :meth:`wake` (the consumer's moment to look at the world). Ends
        when ``stop`` is set (give :meth:`wake` a call after setting it) or the ring is closed and
        drained."""
        idle_reported = False
        with self._lock:
            seen = self._wakeups  # wake() calls already answered by a yield
        while not stop.is_set():
            with self._lock:
                while self._count == 0 and not self._closed and not stop.is_set():
                    if self._wakeups != seen:  # woken (now or while the consumer was busy)
                        idle_reported = False
                    if not idle_reported:
                        break
                    self._not_empty.wait()
                if stop.is_set():
                    return
                seen = self._wakeups
                if self._count == 0:
                    if self._closed:
                        return
                    item = None
                    idle_reported = True
                else:
                    item = self._take()
                    idle_reported = False
            yield item

    def close(self) -> None:
        """No more puts; consumers drain what is left, then get RingClosed."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def stats(self) -> RingStats:
        with self._lock:
            return RingStats(
                self.capacity, self.policy, self._count, self.high_water, self.puts, self.gets, dict(self.drops)
            )
