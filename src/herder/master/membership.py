"""The workers the master knows: joining, coming back within their lease, their heartbeats and
drains, disconnecting, and being declared lost, by the lease watch or at once after a clean stop.

Each change goes to the scheduling core; its decisions (attempts to queue again, to stop) go to
the dispatcher. A hello's claims go through the core's `adopt`: a worker keeps only attempts
that are its own; the others are refused (`ownership`). Imports the scheduling core, `config`,
`protocol.frames` and the master's `sessions`, `dispatch`, `ownership` and `stats`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from herder import scheduling as sch
from herder.config import MasterSettings
from herder.master.dispatch import Dispatcher
from herder.master.ownership import Ownership
from herder.master.sessions import WorkerSession
from herder.master.stats import Stats
from herder.protocol import frames

log = logging.getLogger(__name__)


class Membership:
    def __init__(
        self,
        settings: MasterSettings,
        sched: sch.Scheduler,
        sessions: dict[str, WorkerSession],
        type_names: frozenset[str],
        dispatcher: Dispatcher,
        stats: Stats,
        ownership: Ownership,
    ) -> None:
        """`sessions`: the table of workers it keeps, by session id (the dispatcher reads it)."""
        self._settings = settings
        self._sched = sched
        self._type_names = type_names
        self._dispatcher = dispatcher
        self._stats = stats
        self._ownership = ownership
        self.sessions = sessions
        self._by_uid: dict[str, str] = {}  # worker process uid -> session id

    def joined(self, hello: frames.Hello) -> tuple[WorkerSession, frames.Welcome]:
        """A connection said hello: a new worker, or one coming back within its lease."""
        now = time.monotonic()
        session = self.sessions.get(self._by_uid.get(hello.uid or "", ""))
        decisions: list[sch.Decision] = []
        if session is not None and session.name == hello.name:
            session.attach()
            decisions += self._sched.handle(sch.WorkerReconnected(session.id), now)
            log.info("worker %s (%s) reconnected", session.name, session.id)
        else:
            session = WorkerSession(
                id=uuid.uuid4().hex[:12],
                uid=hello.uid,
                name=hello.name,
                slots=hello.slots,
                pool=hello.pool,
                types=frozenset(hello.types) & self._type_names,
                labels=frozenset(hello.labels),
            )
            self.sessions[session.id] = session
            if hello.uid:
                self._by_uid[hello.uid] = session.id
            decisions += self._sched.handle(
                sch.WorkerJoined(
                    session.id, session.slots, session.types, session.labels,
                    uid=session.stored_uid,
                ),
                now,
            )
            log.info("worker %s (%s) joined with %d slots", session.name, session.id, session.slots)
        keep = self._reconcile(session, hello, decisions, now)
        welcome = frames.Welcome(
            worker_id=session.id, heartbeat=self._settings.heartbeat, keep=keep,
            hand_back_after=self._sched.config.hand_back_after,
        )
        return session, welcome

    def _reconcile(
        self,
        session: WorkerSession,
        hello: frames.Hello,
        decisions: list[sch.Decision],
        now: float,
    ) -> list[frames.AttemptRef]:
        """Agree with a (re)connecting worker on what it holds.

        What it runs, or has results for, is taken back when it is still this worker's (or,
        after a master restart, held for a worker of its uid: `Scheduler.adopt`); any other
        claim is refused. What the master thought it held and it no longer has is queued again.
        The running attempts the master does not keep are listed in no `keep`, so the worker
        stops them; the results it sends for attempts not taken back are stale or refused.
        """
        reported = {(r.task_id, r.index, r.attempt) for r in (*hello.running, *hello.results)}
        for task_id, index, attempt in self._sched.held_by(session.id):
            if (task_id, index, attempt) not in reported:
                decisions += self._sched.handle(sch.AttemptEnded(task_id, index, attempt), now)
        held = set(self._sched.held_by(session.id))
        keep: list[frames.AttemptRef] = []
        refused: list[frames.AttemptRef] = []
        running = set(hello.running)
        for ref in (*hello.running, *hello.results):
            key = (ref.task_id, ref.index, ref.attempt)
            if key in held or self._sched.adopt(session.id, *key, now=now):
                if key not in held:
                    self._dispatcher.adopted(ref.task_id)
                if ref in running:
                    keep.append(ref)
            elif self._sched.wanted(ref.task_id, ref.index):
                refused.append(ref)
            else:  # its result is in, or its task ended: a claim that comes late
                self._stats.stale_messages.inc()
        if refused:
            self._ownership.refuse(session, "hello", refused)
        self._dispatcher.decided(decisions)
        return keep

    def disconnected(self, session: WorkerSession, connection: int, why: str) -> None:
        """The connection `connection` of the session closed. Its attempts stay leased to the
        worker until --lease-timeout, so that it can reconnect and keep them."""
        if session.connection != connection or self.sessions.get(session.id) is not session:
            return  # a newer connection of the same worker took over
        session.detach()
        log.info("worker %s (%s) disconnected: %s", session.name, session.id, why)
        if session.draining and not self._sched.held_by(session.id):
            self.lost(session, "stopped")  # a clean stop: nothing to wait for
            return
        self._dispatcher.decided(
            self._sched.handle(sch.WorkerDisconnected(session.id), time.monotonic())
        )

    def heartbeat(self, session: WorkerSession, frame: frames.Heartbeat) -> None:
        session.last_heartbeat = time.time()
        if frame.unavailable != session.unavailable:
            session.unavailable = frame.unavailable
            self._sched.handle(sch.WorkerCapacity(session.id, frame.unavailable), time.monotonic())
            self._dispatcher.kick()

    def draining(self, session: WorkerSession) -> None:
        """The worker takes no new attempts; it stops once those it holds are over."""
        session.draining = True
        self._sched.handle(sch.WorkerDraining(session.id), time.monotonic())

    def drain(self, name: str) -> list[WorkerSession]:
        """Ask the connected workers named `name` (or of that id) to finish what they run,
        take no more and stop; those asked. Taking none from now on does not wait for them."""
        asked = [
            s for s in self.sessions.values() if s.connected and name in (s.name, s.id)
        ]
        for session in asked:
            log.info("worker %s (%s): drain asked", session.name, session.id)
            self.draining(session)
            session.send(frames.Drain())
        return asked

    def lost(self, session: WorkerSession, why: str) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        if session.uid:
            self._by_uid.pop(session.uid, None)
        session.close(why)
        level = logging.INFO if why == "stopped" else logging.WARNING
        log.log(level, "worker %s (%s) gone: %s", session.name, session.id, why)
        decisions = self._sched.handle(sch.WorkerLeft(session.id), time.monotonic())
        if any(isinstance(d, sch.Requeue) for d in decisions):
            self._stats.lost_workers.inc()
        self._dispatcher.decided(decisions)

    async def watch_leases(self) -> None:
        """Declare lost a worker silent, or disconnected, for longer than --lease-timeout."""
        interval = min(self._settings.heartbeat, self._settings.lease_timeout) / 2
        while True:
            asleep = time.monotonic()
            await asyncio.sleep(interval)
            # A loop that was held up (a long GC pause, a slow inline aggregate) heard nobody
            # meanwhile: the workers' frames wait in the sockets. Their silence is not theirs.
            stalled = time.monotonic() - asleep - interval
            if stalled > interval:
                for session in self.sessions.values():
                    session.last_seen += stalled
                    session.disconnected_at += stalled
            limit = time.monotonic() - self._settings.lease_timeout
            for session in list(self.sessions.values()):
                if session.connected and session.last_seen < limit:
                    self.lost(session, "lease expired: no heartbeat")
                elif not session.connected and session.disconnected_at < limit:
                    self.lost(session, "lease expired: did not reconnect")
