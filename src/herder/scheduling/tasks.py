"""What the scheduler core keeps per task and per subtask: its attempts, which of them run where,
its failures, and its place in the ready queue. Plain mutable records, shared by the queue, the
workers' book and the attempts' book. Imports only the stdlib.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

#: one attempt of one subtask: (task id, subtask index, attempt number)
AttemptKey = tuple[str, int, int]


@dataclass(slots=True)
class Subtask:
    attempts: int = 0
    failures: int = 0
    running: dict[int, str] = field(default_factory=dict)  # attempt -> worker
    done: bool = False
    #: workers it failed on: others are preferred for its retries
    avoid: set[str] = field(default_factory=set)
    ready_at: float = 0.0
    #: running when the master stopped, on the worker of this uid: not queued until ReleaseHeld
    #: or until that worker claims it back
    held_for: str | None = None
    started: dict[int, float] = field(default_factory=dict)  # attempt -> dispatch time


# eq=False: tasks are told apart by identity (the ready queue's rings remove them so)
@dataclass(slots=True, eq=False)
class Task:
    id: str
    type: str
    priority: int
    max_retries: int
    labels: frozenset[str]
    subtasks: dict[int, Subtask]
    #: indices of its ready subtasks, in the order they run
    ready: deque[int] = field(default_factory=deque)
    remaining: int = 0
    ended: bool = False
    speculative: bool = True
    #: is it in its priority's ring (kept here: searching a long ring costs)
    in_ring: bool = False
    #: run times of its successful attempts, sorted (for the straggler median)
    durations: list[float] = field(default_factory=list)
    #: at most this many of its subtasks run at once (None: no cap); see `Attempts.at_cap`
    max_parallel: int | None = None
    #: is it under a cap, its own or its type's (the check is skipped for the others)
    capped: bool = False
    #: its attempts running (held by a worker, speculative ones too) plus its subtasks held
    #: for a worker after a master restart: what the caps count
    occupying: int = 0


def median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2
