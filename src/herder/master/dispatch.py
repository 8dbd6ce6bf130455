"""Carrying out what the scheduling core decides: subtasks sent to workers, attempts cancelled
or queued again, and the dispatcher run whenever slots or subtasks may have freed up.

Every part that feeds the core an event hands its decisions here (`carry_out`, or `decided`,
which also runs the dispatcher soon). A task whose subtasks have all succeeded goes to
`complete` (the aggregation's, wired by the master). Imports the scheduling core, `tasktype`,
`protocol.frames` and the master's `live`, `sessions`, `records` and `stats`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from herder import scheduling as sch
from herder.master.live import ActiveTask
from herder.master.records import Records
from herder.master.sessions import WorkerSession
from herder.master.stats import Stats
from herder.protocol import frames
from herder.tasktype import Registry

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        sched: sch.Scheduler,
        registry: Registry,
        active: dict[str, ActiveTask],
        sessions: dict[str, WorkerSession],
        records: Records,
        stats: Stats,
        may_dispatch: Callable[[], bool],
    ) -> None:
        self._sched = sched
        #: False while this master is not sure it still leads (its lease is running out): then
        #: nothing is sent, whatever the core would decide
        self._may_dispatch = may_dispatch
        self._registry = registry
        self._active = active
        self._sessions = sessions
        self._records = records
        self._start_attempt = records.start_attempt
        self._stats = stats
        #: where a task whose subtasks all succeeded goes: the aggregation, which ends tasks and
        #: so comes after this in the wiring (the master sets it)
        self.complete: Callable[[ActiveTask], None] = _not_wired
        self._pump_scheduled = False
        self._wakeup: asyncio.TimerHandle | None = None

    def kick(self) -> None:
        """Run the dispatcher soon, once, however many times it is kicked before then."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self.pump)

    def pump(self) -> None:
        """Dispatch what can be, now."""
        self._pump_scheduled = False
        if not self._may_dispatch():
            return
        for d in self._sched.dispatch(time.monotonic()):
            self.send_assign(d)
        self._arm_wakeup()

    def _arm_wakeup(self) -> None:
        at = self._sched.next_wakeup()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if at is not None:
            delay = max(0.0, at - time.monotonic())
            self._wakeup = asyncio.get_running_loop().call_later(delay, self.kick)

    def send_assign(self, d: sch.Dispatch) -> None:
        task = self._active.get(d.task_id)
        session = self._sessions.get(d.worker_id)
        if task is None or session is None:  # cannot happen: the core knows both
            log.error("dispatch to unknown task or worker: %s", d)
            return
        timeout = self._registry.get(task.record.type).subtask_timeout
        if task.deadline is not None:
            left = max(0.0, task.deadline - time.time())
            timeout = left if timeout is None else min(timeout, left)
        session.send(
            frames.assign_map(
                d.task_id, d.index, d.attempt, task.record.type, task.parts[d.index], timeout
            )
        )
        task.progress.subtasks_running += 1
        task.eta.started(time.monotonic())
        self._stats.dispatch_latency.observe(d.waited)
        self._start_attempt(
            (d.task_id, d.index, d.attempt, session.name, time.time(), session.stored_uid)
        )

    def adopted(self, task_id: str) -> None:
        """The core took back an attempt from a reconnecting worker: it runs, as if dispatched."""
        task = self._active.get(task_id)
        if task is not None:
            task.progress.subtasks_running += 1

    def decided(self, decisions: Sequence[sch.Decision]) -> None:
        """Carry out the core's decisions, then run the dispatcher soon."""
        self.carry_out(decisions)
        self.kick()

    def carry_out(self, decisions: Sequence[sch.Decision]) -> None:
        for d in decisions:
            match d:
                # (cases are tried in order: the one of every task that completes first)
                case sch.CompleteTask():
                    task = self._active.get(d.task_id)
                    if task is not None:
                        self.complete(task)
                case sch.CancelAttempt():
                    session = self._sessions.get(d.worker_id)
                    if session is not None:
                        session.send(
                            frames.cancel_map(d.task_id, d.index, d.attempt, d.reason)
                        )
                case sch.Requeue():
                    self._records.requeue_subtask(d.task_id, d.index)
                    task = self._active.get(d.task_id)
                    if task is not None:
                        task.progress.running_fraction.pop(d.index, None)
                        task.progress.subtasks_running = max(0, task.progress.subtasks_running - 1)
                case sch.RetryLater():
                    self._stats.retries.inc()
                case sch.Stale():
                    self._stats.stale_messages.inc()
                case sch.FailTask() | sch.Dispatch():
                    pass  # handled where they arise

    def release_held(self, task_id: str) -> None:
        """What a task recovered after a restart held for its workers may go to any worker."""
        self.decided(self._sched.handle(sch.ReleaseHeld(task_id), time.monotonic()))

    async def speculate(
        self, every: float, factor: float | None, after: float | None, floor: float
    ) -> None:
        """Every `every` seconds, start second attempts of stragglers while slots are idle."""
        while True:
            await asyncio.sleep(every)
            for d in self._sched.speculate(time.monotonic(), factor, after, floor):
                log.info("speculative attempt %d of %s[%d]", d.attempt, d.task_id, d.index)
                self.send_assign(d)


def _not_wired(task: ActiveTask) -> None:
    raise RuntimeError(f"task {task.id} completed before the aggregation was wired")
