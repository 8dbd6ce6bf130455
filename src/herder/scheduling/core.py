"""The scheduler core's state machine: it routes each event to the book it concerns and matches
the ready queue to the workers on `dispatch`.

`Scheduler` composes the ready queue (`queue`), the workers' book (`workers`), the types' run
times (`runtimes`) and the attempts' book (`attempts`); each keeps its own state, and only the
attempts' book changes more than one of them. Imports only the stdlib and `scheduling.*`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from herder.scheduling.attempts import Attempts
from herder.scheduling.config import SchedulerConfig
from herder.scheduling.events import (
    AttemptEnded,
    AttemptFailed,
    AttemptSucceeded,
    Decision,
    Dispatch,
    Event,
    ReleaseHeld,
    TaskEnded,
    TaskReady,
    WorkerCapacity,
    WorkerDisconnected,
    WorkerDraining,
    WorkerJoined,
    WorkerLeft,
    WorkerReconnected,
)
from herder.scheduling.queue import ReadyQueue
from herder.scheduling.runtimes import Runtimes
from herder.scheduling.tasks import AttemptKey, Subtask, Task
from herder.scheduling.workers import Worker, Workers

Picking = Callable[[Task, Subtask], Worker | None]


class Scheduler:
    """Events in (`handle`), decisions out; `dispatch` and `speculate` hand out attempts."""

    def __init__(self, config: SchedulerConfig | None = None, seed: int = 0) -> None:
        self.config = config or SchedulerConfig()
        self._runtimes = Runtimes(self.config.pipeline_below)
        self._queue = ReadyQueue()
        self._workers = Workers(self.config.prefetch, self._runtimes)
        self._attempts = Attempts(
            self.config, random.Random(seed), self._queue, self._workers, self._runtimes
        )

    # -- feeding events ----------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Decision]:
        """Apply one event; return what must be done because of it (dispatch is separate)."""
        # the cases are tried in order: the two that come once per subtask and task first
        match event:
            case AttemptSucceeded():
                return self._attempts.succeeded(event, now)
            case TaskReady():
                return self._attempts.task_ready(event, now)
            case WorkerJoined():
                return self._worker_joined(event, now)
            case WorkerLeft():
                return self._worker_left(event.worker_id, now)
            case WorkerDraining() | WorkerDisconnected() | WorkerReconnected() | WorkerCapacity():
                self._workers.change(event)
                return []
            case ReleaseHeld():
                return self._attempts.release_held(event.task_id, now)
            case AttemptFailed():
                return self._attempts.failed(event, now)
            case AttemptEnded():
                return self._attempts.ended(event, now)
            case TaskEnded():
                return self._attempts.task_ended(event)
        raise TypeError(f"unknown event {event!r}")

    def dispatch(self, now: float, limit: int | None = None) -> list[Dispatch]:
        """Hand ready subtasks to workers with free credit, in scheduling order."""
        attempts = self._attempts
        attempts.release_due(now)
        out: list[Dispatch] = []
        queue = self._queue
        if queue.empty():
            return out
        # The candidates of this round, best first: one look at every worker per round, not
        # one per dispatch.
        picker = self._workers.picker(self._runtimes.deepest(queue.ready_types))
        pick: Picking = picker.pick
        if attempts.capped:
            pick = self._capped(pick)
        while limit is None or len(out) < limit:
            if picker.empty():
                break
            found = queue.take(pick)
            if found is None:
                break
            task, index, worker = found
            sub = task.subtasks[index]
            attempt = attempts.start(task, index, sub, worker, now)
            picker.taken(worker)
            out.append(Dispatch(worker.id, task.id, index, attempt, max(0.0, now - sub.ready_at)))
        return out

    def speculate(
        self, now: float, factor: float | None, after: float | None, floor: float
    ) -> list[Dispatch]:
        """Second attempts for slow subtasks, on workers with idle slots.

        A running subtask is slow when it has run longer than `after` seconds, or (with `factor`)
        than `factor` times the median run time of its finished siblings, and never less than
        `floor`. Only tasks that allow it, only one extra attempt per subtask, never on the
        worker that runs the first one, and only with credit left after normal dispatch.
        """
        self._attempts.release_due(now)
        if not self._workers.any_credit() or self._queued_work_can_run():
            return []  # no idle slot, or queued work comes first: dispatch() hands it out
        return self._attempts.speculate(now, factor, after, floor)

    def adopt(
        self, worker_id: str, task_id: str, index: int, attempt: int, now: float = 0.0
    ) -> bool:
        """A (re)connecting worker says it runs this attempt: is it the worker's to keep?

        Yes when the worker holds it already. After a master restart, also when the subtask is
        held for a worker of this one's uid (TaskReady.held, WorkerJoined.uid) and `attempt` is
        its last attempt the store knows; it is then this worker's. Anything else is refused: a
        worker cannot take an attempt that was not given to it, nor a subtask that waits in the
        queue.
        """
        w = self._workers.get(worker_id)
        return w is not None and self._attempts.adopt(w, task_id, index, attempt, now)

    def next_wakeup(self) -> float | None:
        """When the earliest delayed retry becomes ready (so the shell knows when to dispatch)."""
        return self._attempts.next_wakeup()

    # -- queries -------------------------------------------------------------------------------

    def is_current(self, task_id: str, index: int, attempt: int) -> bool:
        return self._attempts.holder(task_id, index, attempt) is not None

    def holder(self, task_id: str, index: int, attempt: int) -> str | None:
        """The worker the attempt was given to, while it is current (None once it is not): the
        only one whose result, progress and log lines about it count."""
        return self._attempts.holder(task_id, index, attempt)

    def wanted(self, task_id: str, index: int) -> bool:
        """Does the subtask of a live task still need its result (so that a claim of it that
        `adopt` refuses is not merely late)?"""
        return self._attempts.wanted(task_id, index)

    def knows_task(self, task_id: str) -> bool:
        return self._attempts.knows(task_id)

    def task_counts(self, task_id: str) -> tuple[int, int]:
        """(running attempts, queued-or-delayed subtasks) of an active task."""
        return self._attempts.counts(task_id)

    def waiting_for(self, task_id: str) -> str | None:
        """Why the task's ready subtasks do not run, beyond busy slots: a cap that is reached,
        or no connected worker that could take them. None when nothing but load holds them."""
        task = self._attempts.get(task_id)
        if task is None or task.ended or not task.ready:
            return None
        cap = self._attempts.cap_reached(task)
        if cap == "max_parallel":
            return f"held by max_parallel ({task.max_parallel})"
        if cap == "max_running":
            return f"held by max_running of type {task.type} ({self.config.max_running[task.type]})"
        return self._workers.none_can_serve(task)

    def held_by_caps(self) -> dict[tuple[str, str], int]:
        """Ready subtasks that a reached cap holds back, by (type, "max_parallel" |
        "max_running")."""
        out: dict[tuple[str, str], int] = {}
        for task in self._queue.tasks():
            cap = self._attempts.cap_reached(task) if task.capped else None
            if cap is not None:
                out[task.type, cap] = out.get((task.type, cap), 0) + len(task.ready)
        return out

    def queue_depth(self) -> dict[int, int]:
        """Ready subtasks per priority."""
        return self._queue.depth()

    def has_worker(self, worker_id: str) -> bool:
        return worker_id in self._workers

    def worker_load(self, worker_id: str) -> tuple[int, int]:
        """(attempts held, slots)."""
        return self._workers.load(worker_id)

    def held_by(self, worker_id: str) -> list[AttemptKey]:
        return self._workers.held_by(worker_id)

    def worker_health(self, worker_id: str) -> tuple[float | None, bool]:
        """(failure rate of its last attempts or None, deprioritised?)."""
        return self._workers.health(worker_id)

    def is_short(self, type_name: str) -> bool:
        """Are attempts of this type pipelined (see SchedulerConfig.pipeline_below)?"""
        return self._runtimes.is_short(type_name)

    def pipeline_depth(self, type_name: str) -> int:
        """Attempts of this type a worker may hold per slot beyond its slots (0: none)."""
        return self._runtimes.depth(type_name)

    # -- helpers -------------------------------------------------------------------------------

    def _worker_joined(self, ev: WorkerJoined, now: float) -> list[Decision]:
        out: list[Decision] = []
        if ev.worker_id in self._workers:  # a rejoin under the same id: forget the old session
            out += self._worker_left(ev.worker_id, now)
        self._workers.join(ev)
        return out

    def _worker_left(self, worker_id: str, now: float) -> list[Decision]:
        w = self._workers.leave(worker_id)
        return self._attempts.worker_lost(w, now) if w is not None else []

    def _capped(self, pick: Picking) -> Picking:
        """`pick`, except that a task at its cap or its type's gets no worker: the queue then
        serves the tasks behind it."""
        at_cap = self._attempts.at_cap

        def pick_under_caps(task: Task, sub: Subtask) -> Worker | None:
            return None if task.capped and at_cap(task) else pick(task, sub)

        return pick_under_caps

    def _queued_work_can_run(self) -> bool:
        """Would dispatch() hand out a ready subtask now?"""
        for task in self._queue.tasks():
            if task.capped and self._attempts.at_cap(task):
                continue
            depth = self._runtimes.depth(task.type)
            sub = task.subtasks[task.ready[0]]
            if self._workers.picker(depth).pick(task, sub, depth) is not None:
                return True
        return False


def handle_all(sched: Scheduler, events: Iterable[Event], now: float) -> list[Decision]:
    """Apply events in order; the concatenated decisions."""
    out: list[Decision] = []
    for ev in events:
        out += sched.handle(ev, now)
    return out
