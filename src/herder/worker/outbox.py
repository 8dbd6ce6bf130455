"""The frames waiting for the writer of one connection to the master, in order.

Progress and log frames beyond a limit are dropped when the master does not keep up; results
and everything else never are. Imports `protocol.batches` and `protocol.frames`.
"""

from __future__ import annotations

from herder.protocol.batches import Batches
from herder.protocol.frames import WorkerOutgoing

#: progress and log frames waiting to be sent beyond this are dropped (results never are)
OUTBOX_LIMIT = 10_000


class Outbox:
    """Frames waiting for the writer of one connection, in order."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._frames: Batches[WorkerOutgoing] = Batches()
        self._limit = limit
        self.dropped = 0

    def put(self, frame: WorkerOutgoing, droppable: bool = False) -> None:
        if droppable and len(self._frames) >= self._limit:
            self.dropped += 1
            return
        self._frames.put(frame)

    def put_later(self, frame: WorkerOutgoing, delay: float) -> None:
        self._frames.put_later(frame, delay)

    async def get_batch(self, limit: int) -> list[WorkerOutgoing]:
        """The next frame and whatever else is already waiting, up to `limit`."""
        return await self._frames.take(limit)
