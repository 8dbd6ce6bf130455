"""What the master keeps in memory about a task while it is not finished, and the task's JSON view.

Imports `model` and `tasktype` only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from herder.model import JSON, Progress, TaskRecord, TaskState


@dataclass(slots=True)
class ActiveTask:
    record: TaskRecord
    #: the validated params (a Params instance, or the dict when the type has no Params)
    params: Any
    parts: list[JSON] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    deadline_handle: asyncio.TimerHandle | None = None
    #: wall clock (time.time()) deadline, or None
    deadline: float | None = None
    #: the highest fraction shown so far: the bar never goes back while the task runs
    shown_fraction: float = 0.0

    @property
    def id(self) -> str:
        return self.record.id

    def fraction(self) -> float:
        if self.record.state is TaskState.SUCCEEDED:
            return 1.0
        # 1.0 only when the task succeeds: a task whose subtasks are done but that still
        # aggregates is not finished yet.
        current = min(self.progress.fraction, 0.999)
        self.shown_fraction = max(self.shown_fraction, current)
        return self.shown_fraction


def eta_seconds(record: TaskRecord, fraction: float, now: float | None = None) -> float | None:
    """Time left at the task's own observed rate: elapsed * (1 - f) / f."""
    if record.state.finished:
        return 0.0 if record.state is TaskState.SUCCEEDED else None
    if record.started_at is None or fraction <= 0.0:
        return None
    elapsed = (now if now is not None else time.time()) - record.started_at
    if elapsed <= 0:
        return None
    return max(0.0, elapsed * (1.0 - fraction) / fraction)


def task_json(record: TaskRecord, progress: Progress, fraction: float) -> dict[str, JSON]:
    return {
        "id": record.id,
        "type": record.type,
        "params": record.params,
        "priority": record.priority,
        "timeout": record.timeout,
        "state": record.state.value,
        "progress": {
            "fraction": round(fraction, 6),
            "subtasks_total": progress.subtasks_total,
            "subtasks_done": progress.subtasks_done,
            "subtasks_running": progress.subtasks_running,
            "subtasks_failed": progress.subtasks_failed,
        },
        "eta_seconds": eta_seconds(record, fraction),
        "result": record.result,
        "error": record.error.to_json() if record.error else None,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }
