"""A queue of frames for one writer that sends them in batches (both ends of the worker channel).

asyncio.Queue costs a few calls per item on each side (its getters, its wake-ups, its size
checks): two frames per subtask made that ~7 % of the master's time on no-op subtasks. Here
putting a frame is a list append, the writer is woken only when it waits, and it takes
everything waiting at once. Imports nothing of herder.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class Batches(Generic[T]):
    """Items in order, for one consumer at a time."""

    __slots__ = ("_items", "_timer", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        self._items.append(item)
        self._wake()

    def put_later(self, item: T, delay: float) -> None:
        """Like `put`, but the consumer is woken `delay` seconds from now (or by an earlier
        `put`), so that what is put meanwhile goes in the same batch."""
        self._items.append(item)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self, limit: int) -> list[T]:
        """The oldest items, at least one (waiting for it) and at most `limit`."""
        while not self._items or self._timer is not None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self._items) <= limit:
            batch, self._items = self._items, []
        else:
            batch, self._items = self._items[:limit], self._items[limit:]
        return batch
