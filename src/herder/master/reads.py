"""What the HTTP API reads from the master beyond one task: lists, lookups by id, a task's
subtasks, its logs and the journal's events, and the workers.

Reads only: each answers from the master's memory for what it holds (active tasks, sessions)
and from the store for the rest. Imports the master's `core`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from herder.master.core import Master
from herder.model import JSON, LogRecord, TaskState


async def lookup(
    master: Master, task_ids: Sequence[str], finished_only: bool = False
) -> list[dict[str, JSON]]:
    """The tasks of these ids that exist, in the order of `task_ids` (unknown ids skipped);
    with `finished_only`, those of them that are finished (no view made of the others)."""
    stored = [i for i in task_ids if i not in master.active]
    records = await master.store.call(master.store.store.get_tasks, stored) if stored else []
    by_id = {r.id: r for r in records}
    out: list[dict[str, JSON]] = []
    for task_id in task_ids:
        task = master.active.get(task_id)
        if task is not None:
            if not finished_only:
                out.append(master.view(task))
        elif (record := by_id.get(task_id)) is not None:
            out.append(master.stored_view(record))
    return out


async def list_tasks(
    master: Master, state: TaskState | None, type_: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, JSON]], str | None]:
    records, next_cursor = await master.store.call(
        master.store.store.list_tasks, state, type_, limit, cursor
    )
    out = []
    for record in records:
        task = master.active.get(record.id)
        out.append(master.view(task) if task is not None else master.stored_view(record))
    return out, next_cursor


async def logs(master: Master, task_id: str, since: int, limit: int) -> list[LogRecord]:
    await master.journal.flush()
    return await master.store.call(master.store.store.get_logs, task_id, since, limit)


async def logs_dropped(master: Master, task_id: str) -> int:
    record = await master.store.call(master.store.store.get_task, task_id)
    return record.logs_dropped if record is not None else 0


async def events(
    master: Master, task_id: str | None, since: int, limit: int
) -> list[LogRecord]:
    await master.journal.flush()
    return await master.store.call(master.store.store.get_events, task_id, since, limit)


async def subtasks(master: Master, task_id: str) -> list[dict[str, JSON]]:
    master.starts.post()  # the call makes them first: every start is in what it reads
    records = await master.store.call(master.store.store.get_subtasks, task_id)
    task = master.active.get(task_id)
    now = time.time()
    out: list[dict[str, JSON]] = []
    for s in records:
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
    return out


def workers(master: Master) -> list[dict[str, object]]:
    sched = master.sched
    out = []
    for s in master.sessions.values():
        held = sched.worker_load(s.id)[0] if sched.has_worker(s.id) else 0
        failure_rate, deprioritised = sched.worker_health(s.id)
        view = s.to_json(busy=held + s.unavailable)
        view["failure_rate"] = failure_rate
        view["deprioritised"] = deprioritised
        out.append(view)
    return out
