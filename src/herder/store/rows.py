"""Rows <-> records, the same for every backend: how values are written into columns (JSON as
text, states as their strings) and read back, and the cursors of `list_tasks`.

Pure: no I/O, no driver. A row is anything indexed by column name (sqlite3.Row, a psycopg dict
row). Imports `model` and `jsontext` only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from herder import jsontext
from herder.jsontext import JSONText
from herder.model import (
    JSON,
    LogRecord,
    ScheduleRecord,
    SubtaskRecord,
    SubtaskState,
    TaskError,
    TaskRecord,
    TaskState,
)

#: the largest page `list_tasks` hands out
MAX_PAGE = 1000
#: `seq < NO_CURSOR` holds for every row (the largest signed 64-bit integer, which both SQLite
#: and PostgreSQL can bind): the first page has no cursor.
NO_CURSOR = 2**63 - 1


class Row(Protocol):
    def __getitem__(self, column: str, /) -> Any: ...


# -- values -> columns ----------------------------------------------------------------------


def encode(value: JSON) -> str:
    """`value` as JSON text; a JSONText is that already."""
    return value if type(value) is JSONText else jsontext.compact(value)


def encode_nullable(value: JSON) -> str | None:
    return None if value is None else encode(value)


def encode_error(error: TaskError | None) -> str | None:
    return None if error is None else encode(error.to_json())


def subtask_rows(task_id: str, parts: Sequence[JSON]) -> list[tuple[str, int, str]]:
    """insert_subtask's parameters for a task's parts: (task_id, idx, part), queued."""
    return [(task_id, i, encode(part)) for i, part in enumerate(parts)]


def task_row(task: TaskRecord) -> tuple[Any, ...]:
    """insert_task's parameters: the columns in order."""
    return (
        task.id, task.type, encode(task.params), task.priority, task.timeout,
        str(task.state), encode_nullable(task.result), encode_error(task.error),
        task.created_at, task.started_at, task.finished_at, task.subtasks_total,
        task.max_retries, task.not_before, task.schedule, task.fired_at, task.max_parallel,
        encode_labels(task.labels),
    )


def encode_labels(labels: Sequence[str]) -> str | None:
    """A task's labels as a JSON array, sorted; NULL for none."""
    return jsontext.compact(sorted(labels)) if labels else None


def log_row(r: LogRecord) -> tuple[Any, ...]:
    """insert_log's parameters: the columns in order."""
    return (r.task_id, r.ts, r.level, r.message, r.subtask, r.attempt, r.worker, r.kind)


def parse_cursor(cursor: str | None) -> int:
    """The seq a `list_tasks` cursor stands for; ValueError for one it did not hand out."""
    if cursor is None or cursor == "":
        return NO_CURSOR
    if not (cursor.isascii() and cursor.isdigit()):
        raise ValueError(f"cursor: {cursor!r} is not a cursor that list_tasks returned")
    # Past the largest seq there is, a cursor means "from the newest"; no backend binds more.
    return min(int(cursor), NO_CURSOR)


# -- columns -> values ----------------------------------------------------------------------


def decode(text: str | None) -> JSON:
    return None if text is None else json.loads(text)


def decode_error(text: str | None) -> TaskError | None:
    return None if text is None else TaskError.from_json(json.loads(text))


def task_from_row(row: Row) -> TaskRecord:
    return TaskRecord(
        id=row["id"],
        type=row["type"],
        params=json.loads(row["params"]),
        priority=row["priority"],
        timeout=row["timeout"],
        state=TaskState(row["state"]),
        result=decode(row["result"]),
        error=decode_error(row["error"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        subtasks_total=row["subtasks_total"],
        max_retries=row["max_retries"],
        logs_dropped=row["logs_dropped"],
        not_before=row["not_before"],
        schedule=row["schedule"],
        fired_at=row["fired_at"],
        max_parallel=row["max_parallel"],
        labels=tuple(json.loads(row["labels"])) if row["labels"] else (),
    )


def schedule_row(schedule: ScheduleRecord) -> dict[str, Any]:
    """insert_schedule's parameters."""
    return {
        "id": schedule.id, "type": schedule.type, "params": encode(schedule.params),
        "cron": schedule.cron, "every": schedule.every, "timezone": schedule.timezone,
        "priority": schedule.priority, "timeout": schedule.timeout,
        "overlap": schedule.overlap, "created_at": schedule.created_at,
    }


def schedule_from_row(row: Row) -> ScheduleRecord:
    return ScheduleRecord(
        id=row["id"], type=row["type"], params=json.loads(row["params"]), cron=row["cron"],
        every=row["every"], timezone=row["timezone"], priority=row["priority"],
        timeout=row["timeout"], overlap=row["overlap"], created_at=row["created_at"],
        last_target_at=row["last_target_at"], last_run_at=row["last_run_at"],
        last_task_id=row["last_task_id"], skipped=row["skipped"],
    )


def subtask_from_row(row: Row) -> SubtaskRecord:
    return SubtaskRecord(
        task_id=row["task_id"],
        index=row["idx"],
        part=json.loads(row["part"]),
        state=SubtaskState(row["state"]),
        attempts=row["attempts"],
        worker=row["worker"],
        result=decode(row["result"]),
        error=decode_error(row["error"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker_uid=row["worker_uid"],
    )


def log_from_row(row: Row) -> LogRecord:
    return LogRecord(
        task_id=row["task_id"],
        ts=row["ts"],
        level=row["level"],
        message=row["message"],
        subtask=row["subtask"],
        attempt=row["attempt"],
        worker=row["worker"],
        seq=row["seq"],
        kind=row["kind"],
    )
