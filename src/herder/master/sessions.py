"""One connected worker as the master sees it: what it announced, and a queue of frames to send.

The ASGI layer (`http`) owns the socket; a session only queues frames, so that the scheduler shell
never awaits a slow worker. Imports `protocol` only.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from herder.protocol import frames
from herder.protocol.batches import Batches


@dataclass(eq=False, slots=True)
class WorkerSession:
    """Outlives its connections: a worker that reconnects within its lease gets the same one."""

    id: str
    uid: str | None
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
    connected: bool = True
    #: monotonic time the last connection closed
    disconnected_at: float = 0.0
    #: slots taken by abandoned attempts, as the worker last reported
    unavailable: int = 0
    #: counts the connections, so that a late close of an old one is told apart
    connection: int = 1
    #: None asks the writer to close the connection
    outbox: Batches[frames.Outgoing | None] = field(default_factory=Batches)
    close_reason: str | None = None
    #: monotonic time its refused messages were last logged (0: never), and how many were
    #: refused since (`ownership`)
    refusals_logged_at: float = 0.0
    refused_unlogged: int = 0
    #: the uid as the store keeps it with the attempts this worker runs (None: it sent none), so
    #: that after a master restart only this worker may claim them back: a digest, because a
    #: reader of the store must not learn a uid it could pose as the worker with
    stored_uid: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.stored_uid = hashlib.sha256(self.uid.encode()).hexdigest() if self.uid else None

    def send(self, frame: frames.Outgoing) -> None:
        if self.connected:  # frames for a worker between connections are lost, by design:
            self.outbox.put(frame)  # it reconciles what it holds when it reconnects

    def close(self, reason: str) -> None:
        """Ask the writer to close the connection with `reason`."""
        self.close_reason = reason
        self.outbox.put(None)

    def attach(self) -> None:
        """A new connection of the same worker: frames go to it from now on."""
        self.close("replaced by a new connection")
        self.outbox = Batches()
        self.connection += 1
        self.connected = True
        self.close_reason = None
        self.last_seen = time.monotonic()

    def detach(self) -> None:
        self.connected = False
        self.disconnected_at = time.monotonic()

    @property
    def state(self) -> str:
        if not self.connected:
            return "disconnected"
        return "draining" if self.draining else "active"

    def to_json(self, busy: int) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "slots": self.slots,
            "busy": busy,
            "pool": self.pool,
            "types": sorted(self.types),
            "labels": sorted(self.labels),
            "state": self.state,
            "connected_at": self.connected_at,
            "last_heartbeat": self.last_heartbeat,
        }
