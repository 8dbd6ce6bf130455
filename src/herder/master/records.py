"""The one way from the master to its store: every read and write it makes, named for what it needs.

Writes are made late and together: posted writes go in one transaction soon (`StoreThread`),
an attempt's start waits for the result whose write carries it (`UnwrittenStarts`), log lines
and final states go in batches (`Journal`). A read that must see some of those makes them first,
here, so that no caller flushes by hand: the reads of logs and events write the journal out, the
read of subtasks posts the starts waiting, and every read of tasks makes the writes posted
before it. What waits for a commit before it goes on (an acknowledgement) awaits a write that
commits (`insert_tasks`, `record_results`), or the future of one (`insert_tasks_later`).

Imports the master's `storethread`, `starts`, `journal` and `events`, `store.base`, `model` and
`jsontext`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from herder.jsontext import JSONText
from herder.master.events import Event
from herder.master.journal import Journal
from herder.master.starts import UnwrittenStarts
from herder.master.storethread import StoreThread
from herder.model import (
    JSON,
    LogRecord,
    ScheduleRecord,
    SubtaskRecord,
    TaskError,
    TaskRecord,
    TaskState,
)
from herder.store.base import AttemptResult, AttemptStart, Store


class Records:
    def __init__(
        self, store: Store, publish: Callable[[Event], None], max_logs_per_task: int
    ) -> None:
        """`publish`: where the journal's entries go once stored (the live events' hub)."""
        self._store = store
        self._thread = StoreThread(store)
        self._starts = UnwrittenStarts(self._thread, store)
        self._journal = Journal(self._thread, store, publish, max_logs_per_task)
        #: is the store called on the event loop (SQLite), not on a thread of its own?
        self.inline = self._thread.inline
        # Bound once: they are on the way of every attempt and every task.
        #: an attempt's start: written with its result, or on its own a moment later
        self.start_attempt: Callable[[AttemptStart], None] = self._starts.add
        #: the attempt's start if it is not written yet: the caller's write carries it
        self.take_start: Callable[[str, int, int], AttemptStart | None] = self._starts.take
        #: a log line or a final state to store, or a live-only event to publish in order
        #: with them; with a final state, the finished task's JSON for its live event
        self.append_journal = self._journal.append
        #: the journal's count of a finished task's log lines is not needed any more
        self.forget_logs: Callable[[str], None] = self._journal.forget
        self.schedules = ScheduleRecords(self._thread, store)

    # -- reads -------------------------------------------------------------------------------

    async def unfinished_tasks(self) -> list[TaskRecord]:
        return await self._thread.call(self._store.unfinished_tasks)

    async def task(self, task_id: str) -> TaskRecord | None:
        return await self._thread.call(self._store.get_task, task_id)

    async def tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        """The tasks of these ids that are stored, in no particular order."""
        return await self._thread.call(self._store.get_tasks, task_ids)

    async def list_tasks(
        self,
        state: TaskState | None,
        type_: str | None,
        limit: int,
        cursor: str | None,
        schedule: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        return await self._thread.call(
            self._store.list_tasks, state, type_, limit, cursor, schedule
        )

    async def subtasks(
        self, task_id: str, after: int = -1, limit: int | None = None
    ) -> list[SubtaskRecord]:
        """A task's subtasks of an index above `after`, in index order: at most `limit` (None:
        all)."""
        self._starts.post()  # the read makes them first: every start is in what it reads
        return await self._thread.call(self._store.get_subtasks, task_id, after, limit)

    def results_now(self, task_id: str) -> list[JSON]:
        """A task's results in part order, read on the event loop (an inline store only). The
        results a subtask counts as done by are committed already: nothing to make first."""
        return self._thread.read_now(self._store.get_results, task_id)

    async def results(self, task_id: str) -> list[JSON]:
        """`results_now` for a store on a thread."""
        return await self._thread.read(self._store.get_results, task_id)

    async def logs(self, task_id: str, since: int, limit: int) -> list[LogRecord]:
        await self._journal.flush()
        return await self._thread.call(self._store.logs.lines, task_id, since, limit)

    async def events(self, task_id: str | None, since: int, limit: int) -> list[LogRecord]:
        """The journal's entries of one task, or of all, after `since`."""
        await self._journal.flush()
        return await self._thread.call(self._store.logs.events, task_id, since, limit)

    async def logs_dropped(self, task_id: str) -> int:
        record = await self._thread.call(self._store.get_task, task_id)
        return record.logs_dropped if record is not None else 0

    # -- writes ------------------------------------------------------------------------------

    def insert_tasks(
        self, records: Sequence[TaskRecord], parts: Sequence[Sequence[JSONText] | None]
    ) -> Awaitable[list[bool]]:
        """Store new tasks (with their parts' texts when split already) and commit; per task,
        False when its id was taken."""
        return self._thread.commit(self._store.insert_tasks, records, parts)

    def insert_tasks_later(
        self, records: Sequence[TaskRecord], parts: Sequence[Sequence[JSONText] | None]
    ) -> asyncio.Future[list[bool]]:
        """`insert_tasks` in the next transaction, whichever comes first; the future is told
        once it has committed."""
        return self._thread.write(self._store.insert_tasks, records, parts)

    def start_task(self, task_id: str, parts: Sequence[JSON], started_at: float) -> None:
        """A pending task is split: it runs, and its parts are stored as queued subtasks."""
        self._thread.post_item(self._store.start_tasks, (task_id, parts, started_at))

    def record_results(self, items: Sequence[AttemptResult]) -> Awaitable[list[bool]]:
        """Store results (with the starts they carry) and commit; per result, whether it was
        stored (False: its subtask had one already)."""
        return self._thread.commit(self._store.record_results, items)

    def record_failure(
        self, task_id: str, index: int, attempt: int, error: TaskError, final: bool, at: float
    ) -> None:
        self._starts.post()  # the start it ends is written first
        self._thread.post(self._store.record_failure, task_id, index, attempt, error, final, at)

    def requeue_subtask(self, task_id: str, index: int) -> None:
        self._starts.post()  # the start it undoes is written first
        self._thread.post(self._store.requeue_subtask, task_id, index)

    def finish_task(
        self, task_id: str, state: TaskState, at: float, result: JSON, error: TaskError | None
    ) -> None:
        self._thread.post_item(self._store.finish_tasks, (task_id, state, at, result, error))

    def store_state(self, task_id: str, state: TaskState) -> None:
        """A state on the task's way (aggregating) for the list filter."""
        self._thread.post_item(self._store.set_task_states, (task_id, state))

    async def delete_finished(self, task_ids: Sequence[str]) -> list[str]:
        """Delete those of these tasks that are finished, with all their rows; the ids
        deleted."""
        await self._journal.flush()  # a final state still waiting is stored, then deleted
        deleted = await self._thread.call(self._store.delete_finished, task_ids)
        await self._thread.call(self._store.reclaim_space)
        return deleted

    async def prune_finished(self, cutoff: float, limit: int) -> list[str]:
        """Delete at most `limit` of the oldest tasks finished before `cutoff`; their ids."""
        await self._journal.flush()
        deleted = await self._thread.call(self._store.prune_finished, cutoff, limit)
        if deleted:
            await self._thread.call(self._store.reclaim_space)
        return deleted

    async def commit_waiting(self) -> None:
        """Commit what waits (the journal's entries, the posted writes) in one transaction, and
        publish the journal's entries."""
        await self._journal.flush()
        self._thread.flush()  # the writes, when the journal had no row to store

    async def close(self) -> None:
        """Write out everything waiting, then close the store."""
        self._starts.post()
        await self._journal.flush()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.close)


class ScheduleRecords:
    """The schedules' part of `Records` (`records.schedules`): every write commits at once, in
    order with the writes posted before it."""

    def __init__(self, thread: StoreThread, store: Store) -> None:
        self._thread = thread
        self._schedules = store.schedules

    async def all(self) -> list[ScheduleRecord]:
        return await self._thread.call(self._schedules.all)

    async def get(self, schedule_id: str) -> ScheduleRecord | None:
        return await self._thread.call(self._schedules.get, schedule_id)

    def insert(self, schedule: ScheduleRecord) -> Awaitable[bool]:
        """Store a new schedule and commit; False when its id was taken."""
        return self._thread.commit(self._schedules.insert, schedule)

    def delete(self, schedule_id: str) -> Awaitable[bool]:
        return self._thread.commit(self._schedules.delete, schedule_id)

    def skip_firing(self, schedule_id: str, fired_at: float) -> Awaitable[bool]:
        """Count a firing let go, and commit; False if it was counted (or passed) already."""
        return self._thread.commit(self._schedules.skip_firing, schedule_id, fired_at)
