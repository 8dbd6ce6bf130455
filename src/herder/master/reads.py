"""What the HTTP API reads beyond one task: lists, lookups by id, a task's subtasks, its logs and
the journal's events, the workers, and the figures of the moment.

Reads only: each answers from memory for what the master holds (active tasks, sessions, the
core's queues) and from the store (`records`, which makes first whatever the read must see) for
the rest. Imports the scheduling core, `model` and the master's `live`, `records`, `tasks`,
`sessions` and `stats`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from herder import scheduling as sch
from herder.master.live import ActiveTask, active_view
from herder.master.records import Records
from herder.master.sessions import WorkerSession
from herder.master.stats import Stats
from herder.master.tasks import Tasks
from herder.model import JSON, LogRecord, TaskState


class Reads:
    def __init__(
        self,
        records: Records,
        tasks: Tasks,
        sessions: dict[str, WorkerSession],
        sched: sch.Scheduler,
        stats: Stats,
    ) -> None:
        self._records = records
        self._tasks = tasks
        self._active = tasks.active
        self._sessions = sessions
        self._sched = sched
        self._stats = stats

    async def lookup(
        self, task_ids: Sequence[str], finished_only: bool = False
    ) -> list[dict[str, JSON]]:
        """The tasks of these ids that exist, in the order of `task_ids` (unknown ids skipped);
        with `finished_only`, those of them that are finished (no view made of the others)."""
        active = self._active
        stored = [i for i in task_ids if i not in active]
        records = await self._records.tasks(stored) if stored else []
        by_id = {r.id: r for r in records}
        out: list[dict[str, JSON]] = []
        for task_id in task_ids:
            task = active.get(task_id)
            if task is not None:
                if not finished_only:
                    out.append(active_view(task, self._sched.waiting_for(task_id)))
            elif (record := by_id.get(task_id)) is not None:
                out.append(self._tasks.stored_view(record))
        return out

    async def list_tasks(
        self,
        state: TaskState | None,
        type_: str | None,
        limit: int,
        cursor: str | None,
        schedule: str | None = None,
    ) -> tuple[list[dict[str, JSON]], str | None]:
        records, next_cursor = await self._records.list_tasks(
            state, type_, limit, cursor, schedule
        )
        out = []
        for record in records:
            task = self._active.get(record.id)
            out.append(
                active_view(task, self._sched.waiting_for(task.id))
                if task is not None
                else self._tasks.stored_view(record)
            )
        return out, next_cursor

    async def logs(self, task_id: str, since: int, limit: int) -> list[LogRecord]:
        return await self._records.logs(task_id, since, limit)

    async def logs_dropped(self, task_id: str) -> int:
        return await self._records.logs_dropped(task_id)

    async def events(self, task_id: str | None, since: int, limit: int) -> list[LogRecord]:
        return await self._records.events(task_id, since, limit)

    async def subtasks(
        self, task_id: str, after: int, limit: int
    ) -> tuple[list[dict[str, JSON]], int | None]:
        """A page of a task's subtasks: those of an index above `after`, at most `limit`, as
        stored with what the master holds of the running ones; and the index the next page
        comes after (None: this is the last)."""
        # One row more than asked tells whether a next page exists, so the last page never
        # hands out a cursor that leads to an empty page.
        records = await self._records.subtasks(task_id, after, limit + 1)
        next_after = records[limit - 1].index if len(records) > limit else None
        task = self._active.get(task_id)
        now = time.time()
        out: list[dict[str, JSON]] = []
        for s in records[:limit]:
            running = s.state.value == "running"
            end = s.finished_at if s.finished_at is not None else (now if running else None)
            live = task is not None and running
            out.append(
                {
                    "index": s.index,
                    "state": s.state.value,
                    "attempts": s.attempts,
                    "worker": s.worker,
                    "started_at": s.started_at,
                    "finished_at": s.finished_at,
                    "duration": (end - s.started_at) if end and s.started_at else None,
                    "message": task.messages.get(s.index) if task and live else None,
                    "fraction": task.progress.running_fraction.get(s.index)
                    if task and live
                    else None,
                    "error": s.error.message if s.error else None,
                }
            )
        return out, next_after

    def workers(self) -> list[dict[str, object]]:
        sched = self._sched
        out = []
        for s in self._sessions.values():
            held = sched.worker_load(s.id)[0] if sched.has_worker(s.id) else 0
            failure_rate, deprioritised = sched.worker_health(s.id)
            view = s.to_json(busy=held + s.unavailable)
            view["failure_rate"] = failure_rate
            view["deprioritised"] = deprioritised
            out.append(view)
        return out

    def throughput(self) -> list[list[int]]:
        """[second, subtasks finished in it] for the last minutes."""
        return self._stats.throughput()

    def queue_depth(self) -> dict[int, int]:
        """Ready subtasks waiting for a slot, by priority."""
        return self._sched.queue_depth()

    def tasks_by_state(self) -> dict[str, int]:
        return count_by_state(self._active)


def count_by_state(active: Mapping[str, ActiveTask]) -> dict[str, int]:
    """How many of the active tasks are in each state."""
    counts: dict[str, int] = {}
    for task in active.values():
        counts[task.record.state.value] = counts.get(task.record.state.value, 0) + 1
    return counts


def slots_in_use(sessions: Mapping[str, WorkerSession], sched: sch.Scheduler) -> tuple[int, int]:
    """The slots of the workers known, and how many of them hold an attempt."""
    total = sum(s.slots for s in sessions.values())
    busy = sum(sched.worker_load(s.id)[0] for s in sessions.values() if sched.has_worker(s.id))
    return total, busy
