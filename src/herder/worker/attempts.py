"""The worker's book of the attempts it holds for the master: assigned and waiting for a slot
(the backlog), running in the slot pool, and finished with a result the master has not yet
acknowledged. It answers the master's assign, cancel, ack and drain frames, starts attempts as
slots free up, and turns what the pool reports into frames (it is the pool's `PoolListener`).

Frames go out through the outbox of the current connection, which the channel attaches and
detaches; while there is none, results wait in the book and go out after the next welcome.
Imports `config`, `protocol.frames`, `tasktype` and `worker.{execute,outbox,slots}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from herder.config import WorkerSettings
from herder.protocol.frames import (
    Ack,
    Assign,
    AttemptRef,
    Cancel,
    Drain,
    Heartbeat,
    LogFrame,
    MasterFrame,
    ProgressFrame,
    ResultMap,
    WorkerOutgoing,
    result_map,
)
from herder.tasktype import Registry
from herder.worker.execute import AttemptKey, Finished, Job
from herder.worker.outbox import Outbox
from herder.worker.slots import SlotPool

log = logging.getLogger(__name__)

#: a result of a worker whose slots have attempts waiting may wait this long for the next ones
#: to end, and go in one message with them (AttemptBook._result_hold)...
RESULT_HOLD = 0.03
#: ...but not for less than this: quicker attempts already end many to a wake-up of the loop
RESULT_HOLD_MIN = 0.002


def key_of(ref: AttemptRef) -> AttemptKey:
    return (ref.task_id, ref.index, ref.attempt)


def ref_of(key: AttemptKey) -> AttemptRef:
    return AttemptRef(task_id=key[0], index=key[1], attempt=key[2])


class AttemptBook:
    """What this worker holds for the master, and the frames that tell the master about it."""

    def __init__(
        self,
        settings: WorkerSettings,
        registry: Registry,
        pool: SlotPool,
        drain_asked: Callable[[], None],
    ) -> None:
        """`drain_asked`: called when the master asks this worker to drain."""
        self._settings = settings
        self._drain_asked = drain_asked
        self._name = settings.name
        self._registry = registry
        self.pool = pool
        #: the current connection's outbox; None between connections
        self.outbox: Outbox | None = None
        #: set once the worker drains: new assigns are handed back at once
        self.draining = False
        #: set whenever an attempt ends or a result is acknowledged (the drain waits on it)
        self.changed = asyncio.Event()
        #: attempts assigned and waiting for a free slot, in arrival order
        self._backlog: OrderedDict[AttemptKey, Job] = OrderedDict()
        #: results sent (or to send) and not yet acknowledged, in the order they ended
        self._unacked: dict[AttemptKey, ResultMap] = {}
        #: running attempts the master no longer wants (missing from a welcome's keep)
        self._silent: set[AttemptKey] = set()
        #: the abandoned-slot count the master was last told
        self._told_unavailable = 0

    # -- what it holds -------------------------------------------------------------------------

    def held(self) -> list[AttemptKey]:
        """Attempts this worker holds for the master: waiting for a slot or running."""
        running = [k for k in self.pool.running() if k not in self._silent]
        return [*self._backlog, *running]

    def unacked(self) -> list[AttemptKey]:
        return list(self._unacked)

    def unacked_results(self) -> list[ResultMap]:
        """The result frames to send again on a new connection, in the order they ended."""
        return list(self._unacked.values())

    # -- the connection ------------------------------------------------------------------------

    def send(self, frame: WorkerOutgoing, droppable: bool = False) -> None:
        if self.outbox is not None:
            self.outbox.put(frame, droppable)

    def keep_only(self, sent: list[AttemptRef], keep: list[AttemptRef]) -> None:
        """Stop what we said we were running and the master no longer wants, without a report."""
        wanted = {key_of(ref) for ref in keep}
        running = set(self.pool.running())
        for key in map(key_of, sent):
            if key in wanted:
                continue
            log.info("worker %s: master does not keep attempt %s; stopping it", self._name, key)
            if self._backlog.pop(key, None) is None and key in running:
                self._silent.add(key)
                self.pool.cancel(key, "cancelled")

    def heartbeat(self) -> Heartbeat:
        """The heartbeat to send now: what it holds, and the slots abandoned attempts take."""
        self._told_unavailable = self.pool.abandoned
        return Heartbeat(running=[ref_of(k) for k in self.held()], unavailable=self.pool.abandoned)

    # -- frames from the master ----------------------------------------------------------------

    def handle(self, frame: MasterFrame) -> None:
        if isinstance(frame, Assign):
            self._on_assign(frame)
        elif isinstance(frame, Cancel):
            self._on_cancel(frame)
        elif isinstance(frame, Ack):
            if self._unacked.pop(key_of(frame), None) is not None:
                self.changed.set()
        elif isinstance(frame, Drain):
            log.info("worker %s: the master asks it to drain", self._name)
            self._drain_asked()
        else:
            log.warning("worker %s: unexpected %r frame ignored", self._name, frame.t)

    def _on_assign(self, frame: Assign) -> None:
        key = key_of(frame)
        if key in self._backlog or key in self._unacked or self.pool.runs(key):
            log.debug("worker %s: attempt %s assigned twice; ignored", self._name, key)
            return
        if self.draining:
            self._report(Finished(key, "released", error="worker is draining"))
            return
        if frame.type not in self._registry:
            known = ", ".join(self._registry.names())
            self._report(
                Finished(
                    key,
                    "error",
                    error=f"unknown task type {frame.type!r} on worker {self._name} "
                    f"(it has: {known})",
                )
            )
            return
        deadline = None if frame.timeout is None else time.time() + frame.timeout
        self._backlog[key] = Job(*key, frame.type, frame.part, deadline)
        self._pump()

    def _on_cancel(self, frame: Cancel) -> None:
        key = key_of(frame)
        if self._backlog.pop(key, None) is not None:
            self._report(Finished(key, "cancelled"))
        else:
            self.pool.cancel(key, "cancelled")

    # -- handing work back ---------------------------------------------------------------------

    def release_backlog(self, note: str) -> int:
        """Hand back every attempt waiting in the backlog (reported `released`); how many."""
        released = len(self._backlog)
        for key in list(self._backlog):
            del self._backlog[key]
            self._report(Finished(key, "released", error=note))
        return released

    def hand_back_if_overrun(self, after: float) -> None:
        """Hand back the attempts waiting for a slot once every slot has run its attempt
        `after` seconds: they were sent ahead because their type runs short, and would wait
        behind attempts that overran while other workers may idle (Welcome.hand_back_after)."""
        if not self._backlog and not self.pool.waiting():
            return
        busy = self.pool.busy_for()
        if busy < after:
            return
        note = (
            f"handed back by worker {self._name}: each of its {self._settings.slots} slot(s) "
            f"has run its attempt for over {after:g} s"
        )
        released = self.release_backlog(note)
        waiting = list(self.pool.waiting())
        released += sum(self.pool.release_waiting(key, note) for key in waiting)
        log.info("worker %s: %d waiting attempt(s) handed back: every slot busy for %.1f s",
                 self._name, released, busy)

    # -- starting and reporting ----------------------------------------------------------------

    def _pump(self) -> None:
        """Start waiting attempts while there are free slots."""
        while self._backlog and self.pool.accepts > 0:
            key, job = self._backlog.popitem(last=False)
            try:
                self.pool.start(job)
            except Exception as exc:
                log.exception("worker %s: cannot start attempt %s", self._name, key)
                self._report(Finished(key, "error", error=f"worker could not start it: {exc}"))

    def _report(self, finished: Finished) -> None:
        key = finished.key
        self.changed.set()
        if key in self._silent:
            self._silent.discard(key)
            return
        frame = result_map(
            *key, finished.outcome, finished.result, finished.error, finished.traceback,
            finished.duration,
        )
        self._unacked[key] = frame
        self._sync_capacity()  # an abandoned attempt's slot is taken before its report lands
        hold = self._result_hold(finished.duration)
        if hold and self.outbox is not None:
            self.outbox.put_later(frame, hold)
        else:
            self.send(frame)

    def _result_hold(self, duration: float) -> float:
        """How long a result may wait for others to share its message (0.0: not at all).

        Only while the slots have attempts waiting for them, judged to last (by this attempt's
        run time) twice as long as the hold: the master, which sends the next attempts when it
        has the results, is not waited for. And only when another attempt is due to end within
        the hold: each message costs the master a commit and a reply (docs/decisions.md)."""
        waiting = len(self._backlog) + len(self.pool.waiting())
        slots = self._settings.slots
        hold = min(RESULT_HOLD, waiting * duration / slots / 2)
        return hold if hold >= max(RESULT_HOLD_MIN, duration / slots) else 0.0

    def _sync_capacity(self) -> None:
        """Tell the master at once when slots taken by abandoned attempts change."""
        if self.pool.abandoned != self._told_unavailable and self.outbox is not None:
            self.send(self.heartbeat())

    # -- PoolListener --------------------------------------------------------------------------

    def on_progress(
        self, key: AttemptKey, done: float, total: float | None, message: str | None
    ) -> None:
        if key in self._silent:
            return
        frame = ProgressFrame(
            task_id=key[0], index=key[1], attempt=key[2], done=done, total=total, message=message
        )
        self.send(frame, droppable=True)

    def on_log(self, key: AttemptKey, ts: float, level: str, message: str) -> None:
        if key in self._silent:
            return
        frame = LogFrame(
            task_id=key[0], index=key[1], attempt=key[2], ts=ts, level=level[:20], message=message
        )
        self.send(frame, droppable=True)

    def on_finished(self, finished: Finished) -> None:
        # No pump here: a pool calls on_slot_free once the slot can take work again (at once
        # for a thread that ended, later for an abandoned or killed one), and that pumps.
        self._report(finished)

    def on_slot_free(self) -> None:
        self.changed.set()
        self._sync_capacity()
        self._pump()
