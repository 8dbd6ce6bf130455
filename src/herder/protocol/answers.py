"""The HTTP API's answers as types: what the master writes and what the client and the CLI
read. TypedDicts, so that an answer stays the plain dict its JSON decodes to (no copy, no
validation on the way of every task) while both ends are checked against one definition.

The states a task and a subtask can be in are `model.TaskState` / `SubtaskState`, re-exported
here with the set of final states: the one definition of each. Imports `model` only
(and typing_extensions).
"""

from __future__ import annotations

from typing import Any, Literal

# typing_extensions' (pydantic's own dependency): pydantic reads typing's TypedDict only from
# Python 3.12, and the server documents its answers in the OpenAPI document with these types
from typing_extensions import TypedDict

from herder.model import FINAL_TASK_STATES, SubtaskState, TaskState

__all__ = [
    "FINAL_STATE_NAMES",
    "FINAL_TASK_STATES",
    "BatchItemAnswer",
    "ErrorAnswer",
    "HealthAnswer",
    "LogLine",
    "LogsPage",
    "ProgressView",
    "ResultAnswer",
    "ScheduleView",
    "SchedulesAnswer",
    "StandbyAnswer",
    "StatsAnswer",
    "SubtaskState",
    "SubtaskView",
    "SubtasksAnswer",
    "TaskErrorView",
    "TaskPage",
    "TaskState",
    "TaskView",
    "TasksAnswer",
    "TypeView",
    "TypesAnswer",
    "WorkerView",
    "WorkersAnswer",
]

#: the final states as the text the wire carries
FINAL_STATE_NAMES: frozenset[str] = frozenset(s.value for s in FINAL_TASK_STATES)


class ProgressView(TypedDict):
    fraction: float
    subtasks_total: int
    subtasks_done: int
    subtasks_running: int
    subtasks_failed: int


class TaskErrorView(TypedDict):
    message: str
    subtask: int | None
    worker: str | None
    attempt: int | None
    traceback: str | None


class TaskView(TypedDict):
    """One task: `GET /tasks/{id}`, each item of a page, the answer to a submission."""

    id: str
    type: str
    params: dict[str, Any]
    priority: int
    timeout: float | None
    state: str
    progress: ProgressView
    eta_seconds: float | None
    result: Any
    error: TaskErrorView | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    #: when the task was submitted to start, if it was (docs/time.md)
    not_before: float | None
    #: the schedule that fired it, and the time of that firing (None: submitted)
    schedule: str | None
    fired_at: float | None
    #: at most this many of its subtasks run at once (None: no cap of its own)
    max_parallel: int | None
    #: the worker labels it asked for beyond its type's
    labels: list[str]
    #: while it runs: what holds its ready subtasks back beyond busy slots (a cap that is
    #: reached, no connected worker with its labels), else None
    waiting_for: str | None


class TaskPage(TypedDict):
    """`GET /tasks`: a page, and the cursor of the next one (None: the last)."""

    tasks: list[TaskView]
    next_cursor: str | None


class TasksAnswer(TypedDict):
    """`POST /tasks/lookup`."""

    tasks: list[TaskView]


class BatchItemAnswer(TypedDict):
    """One item of `POST /tasks/batch`'s answer, in the order of the request's items."""

    status: int
    task: TaskView | None
    detail: str | None


class ResultAnswer(TypedDict):
    result: Any


class LogLine(TypedDict):
    seq: int
    ts: float
    level: str
    message: str
    subtask: int | None
    attempt: int | None
    worker: str | None


class LogsPage(TypedDict):
    """`GET /tasks/{id}/logs`: lines after `since`, and how many the per-task bound dropped."""

    logs: list[LogLine]
    dropped: int


class SubtaskView(TypedDict):
    index: int
    state: str
    attempts: int
    worker: str | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    message: str | None
    fraction: float | None
    error: str | None


class SubtasksAnswer(TypedDict):
    """`GET /tasks/{id}/subtasks`: a page in index order, and the cursor of the next one (None:
    the last)."""

    subtasks: list[SubtaskView]
    next_cursor: str | None


class WorkerView(TypedDict):
    id: str
    name: str
    slots: int
    busy: int
    pool: str
    types: list[str]
    labels: list[str]
    state: str
    connected_at: float
    last_heartbeat: float
    failure_rate: float | None
    deprioritised: bool


class WorkersAnswer(TypedDict):
    workers: list[WorkerView]


class TypeView(TypedDict):
    name: str
    params_schema: dict[str, Any]
    max_retries: int
    subtask_timeout: float | None
    max_running: int | None
    labels: list[str]
    doc: str | None


class TypesAnswer(TypedDict):
    types: list[TypeView]


class StatsAnswer(TypedDict):
    #: [unix second, subtasks finished in it] pairs, oldest first
    throughput: list[list[int]]
    queue_depth: dict[str, int]
    tasks: dict[str, int]


class HealthAnswer(TypedDict):
    status: str
    workers: int
    #: whether this master is the one that serves (several may share a PostgreSQL store)
    role: Literal["active", "standby"]
    #: the term of leadership served or last seen; 0 on a store without leadership (SQLite)
    term: int
    #: the advertised URL of the active master, when one is known
    active_url: str | None


class StandbyAnswer(TypedDict):
    """503 from a standby master: where the active one is (None while no master is active)."""

    detail: str
    active_url: str | None


class ScheduleView(TypedDict):
    """One schedule: `GET /schedules/{id}`, each item of `GET /schedules`, the answer to
    `POST /schedules`."""

    id: str
    type: str
    params: dict[str, Any]
    cron: str | None
    every: str | None
    timezone: str
    priority: int
    timeout: float | None
    overlap: Literal["skip", "allow"]
    created_at: float
    #: the next firing's time (seconds since the epoch)
    next_run_at: float | None
    #: when the latest firing made its task, and that task
    last_run_at: float | None
    last_task_id: str | None
    #: the firings let go while the previous task was unfinished (`overlap: skip`)
    skipped: int


class SchedulesAnswer(TypedDict):
    schedules: list[ScheduleView]


class ErrorAnswer(TypedDict):
    """Every 4xx and 5xx answer: what was wrong, naming the field where there is one."""

    detail: str
