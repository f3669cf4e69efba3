"""A one-slot hand-off from subscription callbacks to the inference worker.

When inference is slower than the cameras, the newest complete frame set must win and the
stale one be dropped and counted: a queue would grow latency without bound. One slot, replaced
on every put, is exactly that policy.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """Holds at most one item; `put` replaces an untaken one (counted in `replaced`)."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._condition = threading.Condition()
        self._closed = False
        self.replaced = 0

    def put(self, item: T) -> bool:
        """Offer `item`; True when it displaced an item the worker had not taken yet."""
        with self._condition:
            displaced = self._item is not None
            self.replaced += displaced
            self._item = item
            self._condition.notify()
            return displaced

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to `timeout` seconds; None on time-out or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake a waiting worker for good; later takes return what is left, then None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
