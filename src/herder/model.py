"""Plain data: the words of DESIGN.md as states and records. No I/O; imports only the stdlib."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

JSON = Any  # a value that json.dumps accepts


class TaskState(enum.StrEnum):
    #: submitted with a `not_before` still ahead: waits for it, then goes on as pending
    SCHEDULED = "scheduled"
    PENDING = "pending"
    RUNNING = "running"
    AGGREGATING = "aggregating"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self in FINAL_TASK_STATES


#: each state as a plain `str`, for the JSON that is sent: encoders take an enum member on a
#: slow path
STATE_TEXT: dict[str, str] = {state.value: state.value for state in TaskState}

FINAL_TASK_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
)

# The legal task transitions, in one place (DESIGN.md "The way of one task").
TASK_TRANSITIONS: frozenset[tuple[TaskState, TaskState]] = frozenset(
    {
        (TaskState.SCHEDULED, TaskState.PENDING),
        (TaskState.PENDING, TaskState.RUNNING),
        (TaskState.RUNNING, TaskState.AGGREGATING),
        (TaskState.AGGREGATING, TaskState.SUCCEEDED),
    }
    | {(s, end) for s in (TaskState.PENDING, TaskState.RUNNING, TaskState.AGGREGATING)
       for end in (TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT)}
    # a scheduled task has no deadline armed yet: it cannot time out
    | {(TaskState.SCHEDULED, end) for end in (TaskState.FAILED, TaskState.CANCELLED)}
)


class SubtaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why a task failed: the message, and where it happened when a subtask caused it."""

    message: str
    subtask: int | None = None
    worker: str | None = None
    traceback: str | None = None
    attempt: int | None = None

    def to_json(self) -> dict[str, JSON]:
        return {
            "message": self.message,
            "subtask": self.subtask,
            "worker": self.worker,
            "attempt": self.attempt,
            "traceback": self.traceback,
        }

    @classmethod
    def from_json(cls, data: dict[str, JSON] | None) -> TaskError | None:
        if not data:
            return None
        return cls(
            message=str(data.get("message", "")),
            subtask=data.get("subtask"),
            worker=data.get("worker"),
            traceback=data.get("traceback"),
            attempt=data.get("attempt"),
        )


@dataclass(slots=True)
class TaskRecord:
    """A task as the store keeps it."""

    id: str
    type: str
    params: dict[str, JSON]
    priority: int = 0
    timeout: float | None = None
    state: TaskState = TaskState.PENDING
    result: JSON = None
    error: TaskError | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    subtasks_total: int = 0
    max_retries: int | None = None
    #: log lines trimmed by the per-task bound
    logs_dropped: int = 0
    #: wall clock time (seconds since the epoch) before which the task does not start, or None
    not_before: float | None = None
    #: the schedule that fired it, and the time of that firing (the store keeps one task per
    #: schedule and firing time)
    schedule: str | None = None
    fired_at: float | None = None

    #: at most this many of its subtasks run at once (None: no cap of its own)
    max_parallel: int | None = None
    #: worker labels its subtasks need beyond its type's, sorted
    labels: tuple[str, ...] = ()

@dataclass(slots=True)
class ScheduleRecord:
    """A schedule as the store keeps it: what it submits, when (`cron` or `every`, in
    `timezone`), and how far its firings are."""

    id: str
    type: str
    params: dict[str, JSON]
    cron: str | None
    every: str | None
    timezone: str = "UTC"
    priority: int = 0
    timeout: float | None = None
    #: "skip": no firing while the previous task is unfinished; "allow": fire anyway
    overlap: str = "skip"
    created_at: float = 0.0
    #: the time of the latest firing made or skipped: the next one is counted from it
    last_target_at: float | None = None
    last_run_at: float | None = None
    last_task_id: str | None = None
    #: the firings skipped because the previous task was unfinished
    skipped: int = 0


@dataclass(slots=True)
class SubtaskRecord:
    """One part of a task as the store keeps it."""

    task_id: str
    index: int
    part: JSON
    state: SubtaskState = SubtaskState.QUEUED
    attempts: int = 0
    worker: str | None = None
    result: JSON = None
    error: TaskError | None = None
    started_at: float | None = None
    finished_at: float | None = None
    #: the uid of the worker running it, as the master stored it (`store.base.AttemptStart`):
    #: never shown by the API
    worker_uid: str | None = None


@dataclass(slots=True)
class LogRecord:
    """One entry of a task's journal, in the order the master received it (`seq`): a log line
    (kind "log"), or a state change (kind "state", `message` = the new state).

    Not frozen: four are made per task, and the store sets `seq` on them when it writes them
    (a frozen dataclass costs a copy for that, and more to construct)."""

    task_id: str
    ts: float
    level: str
    message: str
    subtask: int | None = None
    attempt: int | None = None
    worker: str | None = None
    seq: int = 0
    kind: str = "log"

    def to_json(self) -> dict[str, JSON]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "level": self.level,
            "message": self.message,
            "subtask": self.subtask,
            "attempt": self.attempt,
            "worker": self.worker,
        }


@dataclass(slots=True)
class Progress:
    """How far a task is: finished subtasks plus the reported fraction of running ones."""

    subtasks_total: int = 0
    subtasks_done: int = 0
    subtasks_running: int = 0
    subtasks_failed: int = 0
    running_fraction: dict[int, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        if self.subtasks_total <= 0:
            return 0.0
        partial = sum(self.running_fraction.values())
        return min(1.0, (self.subtasks_done + partial) / self.subtasks_total)
