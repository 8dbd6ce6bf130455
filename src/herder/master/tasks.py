"""The tasks the master runs, from admission to their end: counted under --max-pending, active in
memory while they run, timed against their deadlines, and ended exactly once.

An end (success, failure, cancel, deadline) is stored, counted, published with the task's final
JSON to whoever follows it and to the long polls waiting for it, and told to the core, whose
cancels of the task's running attempts go out. Imports the scheduling core, `model`, `jsontext`
and the master's `live`, `records`, `liveevents`, `dispatch`, `stats` and `rejected`.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from herder import scheduling as sch
from herder.jsontext import JSONText
from herder.master.dispatch import Dispatcher
from herder.master.live import ActiveTask, KeptResults, active_view, stored_view
from herder.master.liveevents import LiveEvents
from herder.master.records import Records
from herder.master.rejected import Rejected
from herder.master.stats import Stats
from herder.model import JSON, Progress, TaskError, TaskRecord, TaskState

#: how many finished tasks' last progress is kept for their views
FINISHED_CACHE = 10_000


class Tasks:
    def __init__(
        self,
        max_pending: int,
        max_pending_subtasks: int,
        sched: sch.Scheduler,
        active: dict[str, ActiveTask],
        records: Records,
        live: LiveEvents,
        kept: KeptResults,
        dispatcher: Dispatcher,
        stats: Stats,
    ) -> None:
        #: the tasks not finished, by id
        self.active = active
        self._max_pending = max_pending
        self._max_pending_subtasks = max_pending_subtasks
        #: the subtasks of the unfinished tasks (and those of tasks being admitted)
        self._subtasks = 0
        self._sched = sched
        self._records = records
        self._live = live
        self._hub = live.hub
        self._kept = kept
        self._dispatcher = dispatcher
        self._stats = stats
        #: tasks admitted and not finished (those being stored too)
        self._unfinished = 0
        #: long polls waiting for a task to finish
        self._waiters: dict[str, list[asyncio.Future[dict[str, JSON] | None]]] = {}
        self._finished: OrderedDict[str, Progress] = OrderedDict()

    # -- admission ---------------------------------------------------------------------------

    def recovered(self, count: int) -> None:
        """At start: `count` tasks were unfinished in the store."""
        self._unfinished = count

    def reserve(self, count: int) -> None:
        """Count `count` more unfinished tasks, or raise Rejected(429) if they do not fit under
        --max-pending. Before any await, so that concurrent submissions see them."""
        if self._unfinished + count > self._max_pending:
            raise Rejected(
                429,
                f"pending queue is full ({self._unfinished} of --max-pending "
                f"{self._max_pending} tasks unfinished); retry later",
                retry_after=1.0,
            )
        self._unfinished += count

    def unreserve(self, count: int) -> None:
        """Give back what `reserve` counted for tasks that were not admitted after all."""
        self._unfinished -= count

    def subtasks_problem(self, count: int) -> str | None:
        """Why `count` more subtasks do not fit under --max-pending-subtasks (none fit once
        the queue is full), or None."""
        held, most = self._subtasks, self._max_pending_subtasks
        if held >= most or held + count > most:
            return (
                f"the queue is full: {held} subtasks of unfinished tasks, and {count} more "
                f"would pass --max-pending-subtasks of {most}"
            )
        return None

    def reserve_subtasks(self, count: int) -> None:
        """Count `count` more subtasks, or raise Rejected(429) if they do not fit under
        --max-pending-subtasks. Before any await, as `reserve`."""
        problem = self.subtasks_problem(count)
        if problem is not None:
            raise Rejected(429, f"{problem}; retry later", retry_after=1.0)
        self._subtasks += count

    def unreserve_subtasks(self, count: int) -> None:
        """Give back what `reserve_subtasks` counted (the parts are counted again as a task's
        `parts_set`)."""
        self._subtasks -= count

    def parts_set(self, task: ActiveTask, parts: list[JSON]) -> None:
        """The task's subtasks are `parts` from now on, and counted as such."""
        self._subtasks += len(parts) - len(task.parts)
        task.parts = parts

    def admit(self, record: TaskRecord, params: Any) -> ActiveTask:
        """Make a reserved task, stored or being stored, active (pending)."""
        self._stats.task_submitted(record.type)
        scheduled = record.state is TaskState.SCHEDULED
        self._live.state(
            record.id, TaskState.SCHEDULED if scheduled else TaskState.PENDING, record.created_at
        )
        return self.activate(record, params)

    def activate(self, record: TaskRecord, params: Any) -> ActiveTask:
        """Make a task active, with its deadline armed (a scheduled task's is armed when its
        time comes: `arm_deadline`)."""
        task = ActiveTask(record=record, params=params)
        if record.state is not TaskState.SCHEDULED:
            self.arm_deadline(task, started_since(record))
        self.active[record.id] = task
        return task

    def arm_deadline(self, task: ActiveTask, since: float) -> None:
        """The task times out `timeout` seconds after `since` (if it has a timeout)."""
        timeout = task.record.timeout
        if timeout is None:
            return
        task.deadline = since + timeout
        delay = max(0.0, task.deadline - time.time())
        task.deadline_handle = asyncio.get_running_loop().call_later(
            delay, self._on_deadline, task.id
        )

    # -- the end -----------------------------------------------------------------------------

    async def cancel(self, task_id: str) -> dict[str, JSON]:
        if task_id not in self.active:
            record = await self._records.task(task_id)
            if record is None:
                raise Rejected(404, f"task {task_id!r} not found")
            raise Rejected(409, f"task {task_id!r} is already {record.state.value}")
        self.end(task_id, TaskState.CANCELLED, None, None)
        view = await self.get(task_id)
        assert view is not None
        return view

    def _on_deadline(self, task_id: str) -> None:
        task = self.active.get(task_id)
        if task is None:
            return
        timeout = task.record.timeout
        error = TaskError(f"timed out: the task's deadline of {timeout} s passed")
        self.end(task_id, TaskState.TIMED_OUT, None, error)

    def fail(self, task_id: str, error: TaskError) -> None:
        self.end(task_id, TaskState.FAILED, None, error)

    def end(
        self,
        task_id: str,
        state: TaskState,
        result: JSON,
        error: TaskError | None,
        stored_result: JSONText | None = None,
    ) -> None:
        """Finish a task exactly once: store it (`stored_result`: the result's JSON text, when
        the caller has it), then tell the core and the workers."""
        task = self.active.pop(task_id, None)
        if task is None:
            return
        if task.deadline_handle is not None:
            task.deadline_handle.cancel()
        if task.aggregating_handle is not None:
            task.aggregating_handle.cancel()
        self._kept.forget(task)
        now = time.time()
        stored = result if stored_result is None else stored_result
        self._records.finish_task(task_id, state, now, stored, error)
        task.record.state = state
        task.record.result = result
        task.record.error = error
        task.record.finished_at = now
        self._unfinished -= 1
        self._subtasks -= len(task.parts)
        self._stats.task_finished(task.record.type, state)
        self._records.forget_logs(task_id)
        self._live.forget(task_id)
        if state is TaskState.SUCCEEDED:
            task.progress.subtasks_done = task.progress.subtasks_total
        task.progress.running_fraction.clear()
        task.progress.subtasks_running = 0
        self._finished[task_id] = task.progress
        if len(self._finished) > FINISHED_CACHE:
            self._finished.popitem(last=False)
        # The task's final JSON goes with the live event (when anyone listens) and to the long
        # polls waiting for it: a client waiting for thousands of tasks reads none of them
        # again, and a waiting call is answered without a read of the store.
        waiters = self._waiters.pop(task_id, ())
        view = self.stored_view(task.record) if waiters or self._hub.active else None
        self._live.state(task_id, state, now, view)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(view)
        if state is not TaskState.SUCCEEDED:
            reason = "timed out" if state is TaskState.TIMED_OUT else state.value
            self._dispatcher.carry_out(self._sched.handle(sch.TaskEnded(task_id, reason), 0.0))
        self._dispatcher.kick()

    def forget_finished(self, task_ids: list[str]) -> None:
        """These finished tasks were deleted: their last progress goes too."""
        for task_id in task_ids:
            self._finished.pop(task_id, None)

    # -- views -------------------------------------------------------------------------------

    async def get(self, task_id: str) -> dict[str, JSON] | None:
        """A task's JSON: from memory while it runs, else as stored; None if there is none."""
        task = self.active.get(task_id)
        if task is not None:
            return active_view(task, self._sched.waiting_for(task_id))
        record = await self._records.task(task_id)
        if record is None:
            return None
        return self.stored_view(record)

    def stored_view(self, record: TaskRecord) -> dict[str, JSON]:
        """A task that is not active, as stored (with its last progress if it ended here)."""
        return stored_view(record, self._finished.get(record.id))

    async def wait_finished(self, task_id: str, timeout: float) -> dict[str, JSON] | None:
        """Return when the task is finished (at once if it is not active), or after timeout:
        its final JSON if it finished meanwhile, else None (the caller reads it with `get`)."""
        if task_id not in self.active:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, JSON] | None] = loop.create_future()
        self._waiters.setdefault(task_id, []).append(waiter)
        # a timer, not asyncio.wait_for: that wraps the wait in a task of its own, one more
        # turn of the loop between the task's end and the answer
        timer = loop.call_later(timeout, _set_none, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            waiters = self._waiters.get(task_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[task_id]


def started_since(record: TaskRecord) -> float:
    """When a task's time started to count against its timeout: its submission; for a delayed
    task, its start (when it has started), else its `not_before`."""
    if record.not_before is None or record.not_before <= record.created_at:
        return record.created_at
    return record.started_at if record.started_at is not None else record.not_before


def _set_none(waiter: asyncio.Future[dict[str, JSON] | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
