"""What the master keeps in memory about a task while it is not finished, and the task's JSON view.

Imports `model` only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from herder.model import JSON, STATE_TEXT, Progress, TaskRecord, TaskState


@dataclass(slots=True)
class ActiveTask:
    record: TaskRecord
    #: the validated params (a Params instance, or the dict when the type has no Params)
    params: Any
    parts: list[JSON] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    deadline_handle: asyncio.TimerHandle | None = None
    #: stores the state `aggregating` if the aggregate is still running then (`aggregation`)
    aggregating_handle: asyncio.TimerHandle | None = None
    #: each result committed so far, for the aggregate to read here rather than from the
    #: store; None when some are only in the store (a task resumed after a restart, or results
    #: over the master's memory budget for them)
    results: dict[int, JSON] | None = field(default_factory=dict)
    results_bytes: int = 0
    #: wall clock (time.time()) deadline, or None
    deadline: float | None = None
    #: the highest fraction shown so far: the bar never goes back while the task runs
    shown_fraction: float = 0.0
    #: last progress message and fraction of each running subtask
    messages: dict[int, str] = field(default_factory=dict)
    eta: EtaEstimator = field(default_factory=lambda: EtaEstimator())

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


class KeptResults:
    """The results kept in memory for the aggregates, under --results-in-memory.

    A task whose results would pass the budget forgets them all: its aggregate reads them
    from the store."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        #: bytes of result JSON held in ActiveTask.results
        self._bytes = 0

    def keep(self, task: ActiveTask, index: int, value: JSON, size: int) -> None:
        """Keep a result (as decoded from the frame: it passed as JSON); `size` is its JSON
        text's, what the budget counts."""
        if task.results is None:
            return
        if self._bytes + size > self._budget:
            self.forget(task)
            return
        task.results[index] = value
        task.results_bytes += size
        self._bytes += size

    def forget(self, task: ActiveTask) -> None:
        self._bytes -= task.results_bytes
        task.results, task.results_bytes = None, 0

    @staticmethod
    def in_order(task: ActiveTask) -> list[JSON] | None:
        """The task's results in part order, when all of them were kept."""
        kept = task.results
        if kept is None or len(kept) != len(task.parts):
            return None
        return [kept[i] for i in range(len(task.parts))]


class EtaEstimator:
    """Time left from the rate at which the task's own progress has been moving lately.

    The fraction (finished subtasks plus the reported part of running ones) is sampled as it
    changes. The rate is measured over a sliding window (the last WINDOW seconds, or since the
    first subtask started when that is shorter), so it reflects the slots the task gets now:
    when another task takes slots away or gives them back, the estimate follows within a window.
    See docs/eta.md.
    """

    WINDOW = 10.0
    MIN_BASIS = 0.5  # seconds of observation before any estimate
    SAMPLE_EVERY = 0.1

    def __init__(self) -> None:
        self.first: float | None = None  # monotonic time the first subtask was dispatched
        self._samples: deque[tuple[float, float]] = deque()

    def started(self, now: float) -> None:
        if self.first is None:
            self.first = now
            self._samples.append((now, 0.0))

    def observe(self, now: float, fraction: float) -> None:
        if self.first is None:
            return
        if self._samples and now - self._samples[-1][0] < self.SAMPLE_EVERY:
            self._samples[-1] = (self._samples[-1][0], fraction)
            return
        self._samples.append((now, fraction))
        while len(self._samples) > 2 and now - self._samples[1][0] > self.WINDOW:
            self._samples.popleft()

    def estimate(self, now: float, fraction: float) -> float | None:
        if self.first is None or fraction <= 0.0 or now - self.first < self.MIN_BASIS:
            return None
        t0, f0 = self._samples[0]
        if fraction <= f0 or now - t0 < self.MIN_BASIS:
            t0, f0 = self.first, 0.0
        rate = (fraction - f0) / (now - t0)
        if rate <= 0:
            return None
        return max(0.0, (1.0 - fraction) / rate)


def eta_seconds(task: ActiveTask, fraction: float) -> float | None:
    return task.eta.estimate(time.monotonic(), fraction)


def active_view(task: ActiveTask, waiting_for: str | None = None) -> dict[str, JSON]:
    """The JSON of a task the master is running, with its progress and ETA of the moment;
    `waiting_for`: what holds its ready subtasks back (`Scheduler.waiting_for`)."""
    fraction = task.fraction()
    return task_json(
        task.record, task.progress, fraction, eta_seconds(task, fraction), waiting_for
    )


def progress_view(task: ActiveTask) -> dict[str, JSON]:
    """A task's progress event: its state, progress and ETA of the moment."""
    view = active_view(task)
    return {
        "task_id": task.id,
        "state": view["state"],
        "progress": view["progress"],
        "eta_seconds": view["eta_seconds"],
    }


def stored_view(record: TaskRecord, progress: Progress | None = None) -> dict[str, JSON]:
    """The JSON of a task that is not active: `progress` is its last one if it ended in this
    master, else it is made from the record."""
    if progress is None:
        done = record.subtasks_total if record.state is TaskState.SUCCEEDED else 0
        progress = Progress(subtasks_total=record.subtasks_total, subtasks_done=done)
    if record.state is TaskState.SUCCEEDED:
        fraction = 1.0
    elif progress.subtasks_total:
        fraction = progress.subtasks_done / progress.subtasks_total
    else:
        fraction = 0.0
    return task_json(record, progress, fraction)


def task_json(
    record: TaskRecord,
    progress: Progress,
    fraction: float,
    eta: float | None = None,
    waiting_for: str | None = None,
) -> dict[str, JSON]:
    return {
        "id": record.id,
        "type": record.type,
        "params": record.params,
        "priority": record.priority,
        "timeout": record.timeout,
        "state": STATE_TEXT[record.state],
        "progress": {
            "fraction": round(fraction, 6),
            "subtasks_total": progress.subtasks_total,
            "subtasks_done": progress.subtasks_done,
            "subtasks_running": progress.subtasks_running,
            "subtasks_failed": progress.subtasks_failed,
        },
        "eta_seconds": 0.0 if record.state is TaskState.SUCCEEDED else eta,
        "result": record.result,
        "error": record.error.to_json() if record.error else None,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "not_before": record.not_before,
        "schedule": record.schedule,
        "fired_at": record.fired_at,
        "max_parallel": record.max_parallel,
        "labels": list(record.labels),
        "waiting_for": waiting_for,
    }
