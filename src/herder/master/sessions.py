"""One connected worker as the master sees it: what it announced, and a queue of frames to send.

The ASGI layer (`http`) owns the socket; a session only queues frames, so that the scheduler shell
never awaits a slow worker. Imports `protocol` only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from herder.protocol import frames


@dataclass(eq=False, slots=True)
class WorkerSession:
    id: str
    name: str
    slots: int
    pool: str
    types: frozenset[str]
    labels: frozenset[str]
    connected_at: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.time)
    #: monotonic time of the last frame, for the lease
    last_seen: float = field(default_factory=time.monotonic)
    draining: bool = False
    outbox: asyncio.Queue[frames.MasterFrame | None] = field(default_factory=asyncio.Queue)
    close_reason: str | None = None

    def send(self, frame: frames.MasterFrame) -> None:
        self.outbox.put_nowait(frame)

    def close(self, reason: str) -> None:
        """Ask the writer to close the connection with `reason`."""
        self.close_reason = reason
        self.outbox.put_nowait(None)

    def to_json(self, busy: int) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "slots": self.slots,
            "busy": busy,
            "pool": self.pool,
            "types": sorted(self.types),
            "labels": sorted(self.labels),
            "state": "draining" if self.draining else "active",
            "connected_at": self.connected_at,
            "last_heartbeat": self.last_heartbeat,
        }
