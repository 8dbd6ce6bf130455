"""At start: the tasks that were not finished when the master stopped, taken up where they were.

A scheduled task waits for its time again (at once if it passed); a pending one is split again;
a running one has its unfinished subtasks scheduled, what was running held for its workers for
--lease-timeout (they may reconnect and claim it back, or deliver its result, instead of running
it again); one whose subtasks all succeeded is aggregated. Imports `errors`, `model`, `tasktype`
and the master's `records`, `tasks`, `submissions`, `aggregation` and `dispatch`.
"""

from __future__ import annotations

import asyncio

from herder.errors import HerderError
from herder.master.aggregation import Aggregation
from herder.master.dispatch import Dispatcher
from herder.master.records import Records
from herder.master.submissions import Submissions
from herder.master.tasks import Tasks
from herder.model import TaskError, TaskRecord, TaskState
from herder.tasktype import Registry


class Recovery:
    def __init__(
        self,
        registry: Registry,
        records: Records,
        tasks: Tasks,
        submissions: Submissions,
        aggregation: Aggregation,
        dispatcher: Dispatcher,
        lease_timeout: float,
    ) -> None:
        self._registry = registry
        self._records = records
        self._tasks = tasks
        self._submissions = submissions
        self._aggregation = aggregation
        self._dispatcher = dispatcher
        self._lease_timeout = lease_timeout

    async def recover(self) -> None:
        """Take up every task that the store holds unfinished."""
        unfinished = await self._records.unfinished_tasks()
        self._tasks.recovered(len(unfinished))
        for record in unfinished:
            await self._take_up(record)

    async def _take_up(self, record: TaskRecord) -> None:
        tasks = self._tasks
        try:
            params = self._registry.get(record.type).parse_params(record.params)
        except HerderError as exc:
            task = tasks.activate(record, record.params)
            tasks.fail(task.id, TaskError(f"cannot resume: {exc}"))
            return
        task = tasks.activate(record, params)
        if record.state is TaskState.SCHEDULED:
            self._submissions.delay(task)  # released at once if its time passed meanwhile
            return
        if record.state is TaskState.PENDING:
            self._submissions.start_split(task)
            return
        subtasks = await self._records.subtasks(record.id)
        task.results = None  # those from before the restart are in the store only
        parts = [s.part for s in subtasks]
        todo = [s.index for s in subtasks if s.state.value != "succeeded"]
        # An attempt's start is stored a while after its dispatch (master/starts.py): a
        # subtask stored as queued may have had one on its way. The next attempt gets a number
        # above it, so the two never pass for each other (the number is the fencing token); the
        # store names no worker for it, so nobody may claim it back.
        attempts = {s.index: s.attempts + (s.state.value == "queued") for s in subtasks}
        if record.state is TaskState.AGGREGATING or not todo:
            tasks.parts_set(task, parts)
            task.progress.subtasks_total = task.progress.subtasks_done = len(parts)
            self._aggregation.start(task)
            return
        # What was running is held for --lease-timeout: the worker of the uid the store keeps
        # for it may reconnect and claim it back (or deliver its result) instead of running it
        # again. One stored without a uid is queued at once: nobody could claim it back.
        held = {
            s.index: s.worker_uid
            for s in subtasks
            if s.state.value == "running" and s.worker_uid
        }
        self._submissions.begin(task, parts, todo, attempts, {}, held)
        if held:
            asyncio.get_running_loop().call_later(
                self._lease_timeout, self._dispatcher.release_held, record.id
            )
