"""What the scheduler core is told and what it decides: its events in (past-tense facts) and
its decisions out (imperatives), as plain values (`values.value`: frozen to mypy).
`herder.scheduling` re-exports every name here. Imports only the stdlib and `values`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field

from herder.values import value

# -- events: what happened --------------------------------------------------------------------


@value
class WorkerJoined:
    worker_id: str
    slots: int
    types: frozenset[str]
    labels: frozenset[str] = frozenset()
    #: the worker's uid as the store records it with its attempts (None: it sent none): after
    #: a master restart, only a worker of that uid may claim back the attempts held for it
    uid: str | None = None


@value
class WorkerLeft:
    """The worker is gone (connection closed, lease expired): its attempts are re-queued."""

    worker_id: str


@value
class WorkerDraining:
    """The worker takes no new work; what it runs may still finish."""

    worker_id: str


@value
class WorkerDisconnected:
    """The connection dropped: the worker keeps its attempts (their lease runs) but gets no new
    work until it reconnects, or is declared lost with WorkerLeft."""

    worker_id: str


@value
class WorkerReconnected:
    worker_id: str


@value
class WorkerCapacity:
    """Slots the worker cannot use although it holds no attempt there (threads still running
    abandoned attempts)."""

    worker_id: str
    unavailable: int


@value
class TaskReady:
    """A task's subtasks are stored and may run. `indices`: those still needing a result
    (all of them for a new task; fewer after a master restart)."""

    task_id: str
    type: str
    priority: int
    indices: Sequence[int]
    max_retries: int = 3
    labels: frozenset[str] = frozenset()
    #: attempts already made per index (after a restart), so attempt numbers keep growing
    attempts_made: Mapping[int, int] = field(default_factory=dict)
    failures_made: Mapping[int, int] = field(default_factory=dict)
    #: subtasks that were running when the master stopped, with the uid of the worker that ran
    #: them: not queued until ReleaseHeld, so that that worker can claim them back first
    held: Mapping[int, str] = field(default_factory=dict)
    #: may a second attempt be started next to a slow one
    speculative: bool = True
    #: at most this many of its subtasks run at once (the submission's max_parallel)
    max_parallel: int | None = None


@value
class ReleaseHeld:
    """The held subtasks of a task that nobody claimed back are queued."""

    task_id: str


@value
class AttemptSucceeded:
    task_id: str
    index: int
    attempt: int
    #: how long the worker ran it, when known: feeds the type's run-time estimate (pipelining)
    duration: float | None = None


@value
class AttemptFailed:
    task_id: str
    index: int
    attempt: int
    #: False: another attempt would fail the same way (its part or result is too large)
    retry: bool = True


@value
class AttemptEnded:
    """The attempt stopped without a result and without counting as a failure: cancelled on
    the master's request, or handed back by its worker (`handed_back`: draining, or every one
    of its slots busy with an attempt that overran)."""

    task_id: str
    index: int
    attempt: int
    handed_back: bool = False


@value
class TaskEnded:
    """The task was cancelled, timed out or failed: drop what is queued, cancel what runs."""

    task_id: str
    reason: str = "cancelled"


Event = (
    WorkerJoined
    | WorkerLeft
    | WorkerDraining
    | WorkerDisconnected
    | WorkerReconnected
    | WorkerCapacity
    | TaskReady
    | ReleaseHeld
    | AttemptSucceeded
    | AttemptFailed
    | AttemptEnded
    | TaskEnded
)

# -- decisions: what to do --------------------------------------------------------------------


@value
class Dispatch:
    worker_id: str
    task_id: str
    index: int
    attempt: int
    #: seconds the subtask waited between becoming ready and this dispatch
    waited: float = 0.0


@value
class CancelAttempt:
    worker_id: str
    task_id: str
    index: int
    attempt: int
    reason: str


@value
class Requeue:
    """A running attempt was lost or handed back; the subtask is queued again."""

    task_id: str
    index: int
    attempt: int
    worker_id: str
    reason: str


@value
class RetryLater:
    task_id: str
    index: int
    attempt: int
    at: float


@value
class FailTask:
    task_id: str
    index: int
    attempt: int
    worker_id: str


@value
class CompleteTask:
    """Every subtask has its result: aggregate."""

    task_id: str


@value
class Stale:
    """A message about an attempt that is not current; drop it and count it."""

    task_id: str
    index: int
    attempt: int


Decision = Dispatch | CancelAttempt | Requeue | RetryLater | FailTask | CompleteTask | Stale
