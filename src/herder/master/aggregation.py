"""A task whose subtasks all succeeded: its results gathered, its type's `aggregate` run, the task
ended with the final result.

The results come from memory when all were kept (`KeptResults`), else from the store. A quick
aggregate runs inline and ends the task in the step that completed it: its state goes from
running to the final one with nothing between, stored or published. A slow one leaves the task
`aggregating` meanwhile. Imports `jsontext`, `model`, `tasktype` and the master's `live`,
`records`, `liveevents`, `tasks`, `taskcode` and `background`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from herder import jsontext
from herder.jsontext import JSONText
from herder.master.background import Background
from herder.master.live import ActiveTask, KeptResults
from herder.master.liveevents import LiveEvents
from herder.master.records import Records
from herder.master.taskcode import TaskCode, code_error
from herder.master.tasks import Tasks
from herder.model import JSON, TaskState
from herder.tasktype import Registry

#: an aggregate of more results than this always runs on a thread, however quick it was before
INLINE_RESULTS = 1000
#: the state `aggregating` is stored only for an aggregate still running after this long
AGGREGATING_STORED_AFTER = 0.1


class Aggregation:
    def __init__(
        self,
        registry: Registry,
        records: Records,
        tasks: Tasks,
        code: TaskCode,
        kept: KeptResults,
        live: LiveEvents,
        background: Background,
    ) -> None:
        self._registry = registry
        self._records = records
        self._tasks = tasks
        self._code = code
        self._kept = kept
        self._live = live
        self._background = background

    def start(self, task: ActiveTask) -> None:
        """Aggregate a task whose subtasks all succeeded."""
        results = self._kept.in_order(task)
        if results is None and not self._records.inline:
            self._aggregating(task)
            self._background.spawn(self._read_results_then_aggregate(task))
            return
        if results is None:
            results = self._records.results_now(task.id)
        self._aggregate(task, results)

    async def _read_results_then_aggregate(self, task: ActiveTask) -> None:
        results = await self._records.results(task.id)
        # It may have ended while they were read (cancelled, timed out): then it is over, and
        # aggregating it would only send an `aggregating` state after its final one.
        if self._tasks.active.get(task.id) is task:
            self._aggregate(task, results)

    def _aggregate(self, task: ActiveTask, results: list[JSON]) -> None:
        aggregate = self._registry.instance(task.record.type).aggregate
        kind = f"{task.record.type}.aggregate"
        args = (task.params, results)
        # far more results than usual could make a quick aggregate slow: a thread
        inline = len(results) <= INLINE_RESULTS
        if inline and self._code.runs_inline(kind):
            # Known to be quick: it runs now and ends the task in this step, whose state goes
            # from running to the final one with no aggregating state in between, stored or
            # published (a journal row, an event and a timer less per task).
            self._code.call_now(task, "aggregate", kind, aggregate, args, self._done)
            return
        self._aggregating(task)  # it takes a while: the task is aggregating meanwhile
        self._code.run(task, "aggregate", kind, aggregate, args, self._done, inline=inline)

    def _done(self, task: ActiveTask, result: Any) -> None:
        try:
            text = JSONText(jsontext.strict(result))
        except Exception as exc:
            self._tasks.fail(task.id, code_error("aggregate", exc))
            return
        self._tasks.end(task.id, TaskState.SUCCEEDED, result, None, stored_result=text)

    def _aggregating(self, task: ActiveTask) -> None:
        record = task.record
        if record.state is not TaskState.AGGREGATING:
            record.state = TaskState.AGGREGATING
            self._live.state(record.id, record.state, time.time())
            # A quick aggregate's row goes from running to its final state in one write; a slow
            # one's is stored as aggregating after a while (for the list filter). Recovery
            # treats a running task whose subtasks all succeeded as aggregating either way.
            task.aggregating_handle = asyncio.get_running_loop().call_later(
                AGGREGATING_STORED_AFTER, self._store_aggregating, record.id
            )

    def _store_aggregating(self, task_id: str) -> None:
        task = self._tasks.active.get(task_id)
        if task is not None and task.record.state is TaskState.AGGREGATING:
            self._records.store_state(task_id, task.record.state)
