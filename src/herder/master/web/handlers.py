"""What each HTTP route asks of the master, and the typed answer it makes of it.

The one module of the HTTP layer that calls the master's API for the routes (submissions,
reads, cancel, schedules, streams, status, draining a worker); the routes parse the request and
encode the answer, the worker channel talks to the master's membership itself. Imports the
master's `core`, `rejected` and `submissions`, `model` and `protocol`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, cast

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection
from starlette.types import Scope

from herder.master.core import Master
from herder.master.rejected import Rejected
from herder.master.seat import RETRY_AFTER, Seat
from herder.master.submissions import Submission
from herder.model import TaskState
from herder.protocol.answers import (
    BatchItemAnswer,
    HealthAnswer,
    LogLine,
    LogsPage,
    ResultAnswer,
    SchedulesAnswer,
    ScheduleView,
    StatsAnswer,
    SubtasksAnswer,
    SubtaskView,
    TaskPage,
    TasksAnswer,
    TaskView,
    TypesAnswer,
    WorkersAnswer,
    WorkerView,
)
from herder.protocol.api import MAX_SEQ, ScheduleRequest, SubmitRequest


def seat_of(scope: Scope) -> Seat:
    """The seat of the app serving this request (`create_app` puts it in the app's state)."""
    seat: Seat = scope["app"].state.seat
    return seat


def master_of(scope: Scope) -> Master:
    """The master the app serves now. The `Guard` lets a request through to a route that needs
    one only on the active master; one that stepped down since gets the standby's 503."""
    seat = seat_of(scope)
    master = seat.master
    if master is None:
        raise HTTPException(503, "this master stepped down to standby; ask the active master",
                            headers={"Retry-After": str(math.ceil(RETRY_AFTER))})
    return master


async def _seat_dependency(connection: HTTPConnection) -> Seat:
    return seat_of(connection.scope)


async def _master_dependency(connection: HTTPConnection) -> Master:
    # async on purpose: FastAPI runs a plain `def` dependency on a thread pool
    return master_of(connection.scope)


#: a route's parameter that FastAPI fills with the app's master
MasterDep = Annotated[Master, Depends(_master_dependency)]
#: ... with the app's seat (the master served, if any, and its role)
SeatDep = Annotated[Seat, Depends(_seat_dependency)]


# -- submissions ---------------------------------------------------------------------------


async def submit(
    master: Master, request: SubmitRequest, wait: float, body_size: int
) -> TaskView:
    """Submit one task; with `wait` > 0 answer when it finishes (or after `wait` s), so that a
    call and its result take one round trip. Raises Rejected."""
    submission = _submission(request, body_size)
    if wait > 0:
        return cast(TaskView, await master.submissions.submit_and_wait(submission, wait))
    (answer,) = await master.submissions.submit_many([submission])
    if isinstance(answer, Rejected):
        raise answer
    return cast(TaskView, answer)


async def submit_batch(
    master: Master, items: Sequence[SubmitRequest | Rejected], body_size: int
) -> list[BatchItemAnswer]:
    """Submit the valid items of a batch; an answer for each item, in their order (an item that
    failed validation is given as the Rejected that says why)."""
    valid = [_submission(i, body_size) for i in items if not isinstance(i, Rejected)]
    answers = iter(await master.submissions.submit_many(valid))
    out: list[BatchItemAnswer] = []
    for item in items:
        answer = item if isinstance(item, Rejected) else next(answers)
        if isinstance(answer, Rejected):
            out.append({"status": answer.status, "task": None, "detail": answer.message})
        else:
            out.append({"status": 201, "task": cast(TaskView, answer), "detail": None})
    return out


def _submission(request: SubmitRequest, body_size: int) -> Submission:
    """`body_size`: the length of the request body that carried it (its params are no longer)."""
    return Submission(
        type=request.type,
        params=request.params,
        priority=request.priority,
        timeout=request.timeout,
        id=request.id,
        retries=request.retries,
        max_parallel=request.max_parallel,
        labels=tuple(request.labels),
        params_bound=body_size,
        not_before=request.not_before,
    )


# -- tasks ---------------------------------------------------------------------------------


async def task(master: Master, task_id: str, wait: float = 0.0) -> TaskView:
    """One task; with `wait` > 0, once it has finished or after `wait` s. Raises Rejected(404)."""
    finished = await master.tasks.wait_finished(task_id, wait) if wait > 0 else None
    if finished is not None:
        return cast(TaskView, finished)
    view = await master.tasks.get(task_id)
    if view is None:
        raise Rejected(404, f"task {task_id!r} not found")
    return cast(TaskView, view)


async def task_page(
    master: Master,
    state: TaskState | None,
    type_: str | None,
    limit: int,
    cursor: str | None,
    schedule: str | None = None,
) -> TaskPage:
    tasks, next_cursor = await master.reads.list_tasks(state, type_, limit, cursor, schedule)
    return {"tasks": cast(list[TaskView], tasks), "next_cursor": next_cursor}


async def lookup(master: Master, task_ids: Sequence[str], finished_only: bool) -> TasksAnswer:
    return {"tasks": cast(list[TaskView], await master.reads.lookup(task_ids, finished_only))}


async def cancel(master: Master, task_id: str) -> TaskView:
    return cast(TaskView, await master.tasks.cancel(task_id))


async def delete(master: Master, task_id: str) -> None:
    """Delete a finished task with everything it owns. Raises Rejected(409) for an unfinished
    task, Rejected(404) for an unknown one."""
    await master.retention.delete(task_id)


async def result(master: Master, task_id: str) -> ResultAnswer:
    view = await task(master, task_id)
    if view["state"] != TaskState.SUCCEEDED.value:
        raise Rejected(409, f"task {task_id!r} is {view['state']}; it has no result")
    return {"result": view["result"]}


async def logs_page(master: Master, task_id: str, since: int, limit: int) -> LogsPage:
    """The log lines after `since`; where the per-task bound dropped older lines between
    `since` and the first kept one, a line saying how many comes first."""
    await task(master, task_id)
    lines = [cast(LogLine, r.to_json()) for r in await master.reads.logs(task_id, since, limit)]
    dropped = await master.reads.logs_dropped(task_id)
    if dropped and lines and since < lines[0]["seq"] - 1:
        first = lines[0]
        marker: LogLine = {
            "seq": first["seq"] - 1, "ts": first["ts"], "level": "WARNING",
            "message": f"{dropped} older log records were dropped",
            "subtask": None, "attempt": None, "worker": None,
        }
        lines.insert(0, marker)
    return {"logs": lines, "dropped": dropped}


async def subtasks(
    master: Master, task_id: str, limit: int, cursor: str | None
) -> SubtasksAnswer:
    """A page of the task's subtasks; `cursor` is the index the page comes after (digits, as
    the route checked; one past any index reads an empty page)."""
    await task(master, task_id)
    after = -1 if cursor is None else min(int(cursor), MAX_SEQ)
    views, next_after = await master.reads.subtasks(task_id, after, limit)
    return {
        "subtasks": cast(list[SubtaskView], views),
        "next_cursor": None if next_after is None else str(next_after),
    }


# -- schedules -----------------------------------------------------------------------------


async def add_schedule(master: Master, request: ScheduleRequest) -> ScheduleView:
    """Raises Rejected: 422 naming the field that is wrong, 409 for an id taken."""
    return await master.schedules.add(request)


def schedules(master: Master) -> SchedulesAnswer:
    return {"schedules": master.schedules.views()}


def schedule(master: Master, schedule_id: str) -> ScheduleView:
    return master.schedules.view(schedule_id)


async def remove_schedule(master: Master, schedule_id: str) -> None:
    await master.schedules.remove(schedule_id)


# -- streams (Server-Sent Events) -------------------------------------------------------------


async def task_events(master: Master, task_id: str, last_id: int | None) -> AsyncIterator[bytes]:
    """Raises Rejected(404) before the stream starts if there is no such task."""
    await task(master, task_id)
    return master.streams.task_events(task_id, last_id)


async def logs_followed(master: Master, task_id: str, since: int) -> AsyncIterator[bytes]:
    await task(master, task_id)
    return master.streams.follow_logs(task_id, since)


def all_events(master: Master, last_id: int | None, finished_only: bool) -> AsyncIterator[bytes]:
    return master.streams.all_events(last_id, finished_only=finished_only)


# -- the master's state --------------------------------------------------------------------


def health(seat: Seat) -> HealthAnswer:
    master = seat.master
    return {
        "status": "ok", "workers": len(master.sessions) if master is not None else 0,
        "role": seat.role, "term": seat.term, "active_url": seat.active_url,
    }


def metrics(seat: Seat) -> bytes:
    """The Prometheus exposition of the leadership's and the served master's metrics."""
    return seat.exposition()


def stats(master: Master) -> StatsAnswer:
    return {
        "throughput": master.reads.throughput(),
        "queue_depth": {str(p): n for p, n in master.reads.queue_depth().items()},
        "tasks": master.reads.tasks_by_state(),
    }


def workers(master: Master) -> WorkersAnswer:
    return {"workers": cast(list[WorkerView], master.reads.workers())}


def drain_worker(master: Master, name: str) -> WorkersAnswer:
    """Ask the connected workers of that name (or id) to drain; raises Rejected(404) if none."""
    asked = {session.id for session in master.members.drain(name)}
    if not asked:
        raise Rejected(404, f"worker {name!r} is not connected")
    views = [w for w in master.reads.workers() if w["id"] in asked]
    return {"workers": cast(list[WorkerView], views)}


def types(master: Master) -> TypesAnswer:
    return {
        "types": [
            {
                "name": t.name,
                "params_schema": t.params_schema(),
                "max_retries": t.max_retries,
                "subtask_timeout": t.subtask_timeout,
                "max_running": t.max_running,
                "labels": sorted(t.labels),
                "doc": (t.__doc__ or "").strip() or None,
            }
            for t in master.registry
        ]
    }
