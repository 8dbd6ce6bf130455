"""The tasks that wait for their `not_before`: a heap of (not_before, task id) and one timer on
the event loop, for the earliest, however many wait.

When the timer fires, every task whose time has come (by the wall clock: `not_before` is one)
is handed to `due`, in time order; the timer is then set for the next. A task that left the
heap's view meanwhile (cancelled) is still in the heap: `due` is told of it and passes. Imports
only the stdlib.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable


class Delays:
    def __init__(self, due: Callable[[str], None]) -> None:
        self._due = due
        self._heap: list[tuple[float, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        #: the time the timer is set for
        self._armed_for: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, task_id: str, not_before: float) -> None:
        heapq.heappush(self._heap, (not_before, task_id))
        if self._armed_for is None or not_before < self._armed_for:
            self._arm()

    def close(self) -> None:
        """Stop the timer (the master stops): nothing is due any more."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, None
        self._heap.clear()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._armed_for = None, None
        if not self._heap:
            return
        earliest = self._heap[0][0]
        self._armed_for = earliest
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, earliest - time.time()), self._fire
        )

    def _fire(self) -> None:
        self._timer, self._armed_for = None, None
        heap = self._heap
        # The loop's timers run by its monotonic clock and may run a little early by the wall
        # clock: a task not due yet by the wall clock waits for the next timer.
        now = time.time()
        try:
            while heap and heap[0][0] <= now:
                _, task_id = heapq.heappop(heap)
                self._due(task_id)
        finally:
            self._arm()
