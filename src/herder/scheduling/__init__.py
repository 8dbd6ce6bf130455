"""The scheduler core: a deterministic state machine, events in, decisions out (no I/O).

It owns which subtask is ready, which attempt of it is current, and which worker holds what.
Time is passed in (`now`, seconds on any monotonic clock) and randomness comes from a seeded
`random.Random`, so the same events always give the same decisions. The master feeds it what
happened (`WorkerJoined`, `AttemptSucceeded`, ...) and carries out what it decides (`Dispatch`,
`CancelAttempt`, `FailTask`, ...).

The algorithm (DESIGN.md "The scheduling algorithm"), one module per concept:
- `queue`: strict priority between tasks; round-robin between tasks of equal priority; FIFO
  inside a task;
- `workers`: credit-based dispatch: a worker holds at most `slots + prefetch` attempts; among
  eligible workers the least loaded one gets the subtask, preferring one that has not failed it
  before, and one that does not fail most of what it runs;
- `runtimes`: pipelining of types whose attempts run short;
- `attempts`: an attempt number per subtask that only grows (the fencing token): a message about
  an attempt that is no longer current is `Stale`; retries with exponential backoff and jitter,
  up to the task's max_retries, then `FailTask`; speculative attempts for stragglers;
- `core`: `Scheduler`, which routes the events (`events`) to them and matches queue to workers.

This package re-exports the names the rest of herder uses. Imports only the stdlib and
`values` (the events and decisions are `values.value`s).
"""

from herder.scheduling.config import OVERRUN_FACTOR, SchedulerConfig
from herder.scheduling.core import Scheduler, handle_all
from herder.scheduling.events import (
    AttemptEnded,
    AttemptFailed,
    AttemptSucceeded,
    CancelAttempt,
    CompleteTask,
    Decision,
    Dispatch,
    Event,
    FailTask,
    ReleaseHeld,
    Requeue,
    RetryLater,
    Stale,
    TaskEnded,
    TaskReady,
    WorkerCapacity,
    WorkerDisconnected,
    WorkerDraining,
    WorkerJoined,
    WorkerLeft,
    WorkerReconnected,
)
from herder.scheduling.runtimes import PIPELINE_DEPTH, PIPELINE_SAMPLES, RUNTIME_WEIGHT
from herder.scheduling.workers import HEALTH_FAILING, HEALTH_MIN, HEALTH_WINDOW

__all__ = [
    "HEALTH_FAILING",
    "HEALTH_MIN",
    "HEALTH_WINDOW",
    "OVERRUN_FACTOR",
    "PIPELINE_DEPTH",
    "PIPELINE_SAMPLES",
    "RUNTIME_WEIGHT",
    "AttemptEnded",
    "AttemptFailed",
    "AttemptSucceeded",
    "CancelAttempt",
    "CompleteTask",
    "Decision",
    "Dispatch",
    "Event",
    "FailTask",
    "ReleaseHeld",
    "Requeue",
    "RetryLater",
    "Scheduler",
    "SchedulerConfig",
    "Stale",
    "TaskEnded",
    "TaskReady",
    "WorkerCapacity",
    "WorkerDisconnected",
    "WorkerDraining",
    "WorkerJoined",
    "WorkerLeft",
    "WorkerReconnected",
    "handle_all",
]
