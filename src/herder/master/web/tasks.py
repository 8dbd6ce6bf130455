"""The task routes but the submissions: read, page, look up, cancel, delete, result, logs,
subtasks, and the event streams.

Each parses its request with FastAPI and answers with `json_answer` (its `response_model` only
documents the answer: a returned Response is not validated again). Imports the web layer's
`handlers` and `responses`, and `protocol`.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from herder.master.rejected import Rejected
from herder.master.web import handlers
from herder.master.web.handlers import MasterDep
from herder.master.web.responses import event_stream, json_answer
from herder.master.web.strictjson import StrictJSONRoute
from herder.model import TaskState
from herder.protocol import paths
from herder.protocol.answers import (
    LogsPage,
    ResultAnswer,
    SubtasksAnswer,
    TaskPage,
    TasksAnswer,
    TaskView,
)
from herder.protocol.api import (
    CURSOR_PATTERN,
    ID_PATTERN,
    MAX_SEQ,
    MAX_SUBTASKS_PAGE,
    MAX_WAIT,
    SUBTASKS_PAGE,
    LookupRequest,
)

router = APIRouter(route_class=StrictJSONRoute)

Wait = Annotated[float, Query(ge=0, le=MAX_WAIT)]
LastEventId = Annotated[int | None, Query(ge=0, le=MAX_SEQ)]
#: `Last-Event-ID`, as the header may carry it: ASCII digits, no sign, no more than a seq has
_EVENT_ID = re.compile(r"[0-9]{1,19}")


@router.get(paths.TASKS, response_model=TaskPage)
async def list_tasks(
    master: MasterDep,
    state: TaskState | None = None,
    type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
    schedule: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> Response:
    """Newest first; `schedule`: only the tasks that schedule fired (the other filters are
    not applied with it)."""
    return json_answer(await handlers.task_page(master, state, type, limit, cursor, schedule))


@router.post(paths.TASKS_LOOKUP, response_model=TasksAnswer)
async def lookup(body: LookupRequest, master: MasterDep) -> Response:
    """Many tasks by id in one request (a read, in a POST for the length of its list): those
    that exist, in the order asked. What `gather` reads the results of thousands of tasks with."""
    return json_answer(await handlers.lookup(master, body.ids, body.finished_only))


@router.get(paths.TASK, response_model=TaskView)
async def get_task(task_id: str, master: MasterDep, wait: Wait = 0.0) -> Response:
    """With `wait`, a long poll: the answer comes when the task finishes, or after `wait` s."""
    return json_answer(await handlers.task(master, task_id, wait))


@router.delete(paths.TASK, status_code=204, response_class=Response)
async def delete_task(task_id: str, master: MasterDep) -> Response:
    """Delete a finished task now, with its subtasks, results and logs: it is then unknown."""
    await handlers.delete(master, task_id)
    return Response(status_code=204)


@router.post(paths.TASK_CANCEL, status_code=202, response_model=TaskView)
async def cancel(task_id: str, master: MasterDep) -> Response:
    return json_answer(await handlers.cancel(master, task_id), 202)


@router.get(paths.TASK_RESULT, response_model=ResultAnswer)
async def result(task_id: str, master: MasterDep) -> Response:
    return json_answer(await handlers.result(master, task_id))


@router.get(paths.TASK_LOGS, response_model=LogsPage)
async def logs(
    task_id: str,
    master: MasterDep,
    since: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    follow: bool = False,
) -> Response:
    """With `follow`, a stream of Server-Sent Events: the lines after `since`, then new ones."""
    if follow:
        return event_stream(await handlers.logs_followed(master, task_id, since))
    return json_answer(await handlers.logs_page(master, task_id, since, limit))


@router.get(paths.TASK_SUBTASKS, response_model=SubtasksAnswer)
async def subtasks(
    task_id: str,
    master: MasterDep,
    limit: Annotated[int, Query(ge=1, le=MAX_SUBTASKS_PAGE)] = SUBTASKS_PAGE,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
) -> Response:
    """A page of the task's subtasks in index order; `next_cursor` is the `cursor` of the next
    page (the index it comes after), None on the last."""
    return json_answer(await handlers.subtasks(master, task_id, limit, cursor))


@router.get(paths.TASK_EVENTS)
async def task_events(
    task_id: str, request: Request, master: MasterDep, last_event_id: LastEventId = None
) -> Response:
    """A stream of Server-Sent Events: a snapshot, the stored events after the last one seen,
    then live ones until the task ends."""
    last = _last_event_id(request, last_event_id)
    return event_stream(await handlers.task_events(master, task_id, last))


@router.get(paths.EVENTS)
async def events(
    request: Request, master: MasterDep, last_event_id: LastEventId = None, finished: bool = False
) -> Response:
    """All tasks' events; with `finished=true`, only the final state event of each task."""
    last = _last_event_id(request, last_event_id)
    return event_stream(handlers.all_events(master, last, finished))


def _last_event_id(request: Request, query: int | None) -> int | None:
    """The `Last-Event-ID` header (what a reconnecting EventSource sends), else the query's."""
    header = request.headers.get("last-event-id")
    if header is not None:
        value = header.strip()
        if _EVENT_ID.fullmatch(value) is None or int(value) > MAX_SEQ:
            raise Rejected(422, f"Last-Event-ID: {header[:40]!r} is not an event id")
        return int(value)
    return query
