"""The attempts' book: the tasks the core schedules, each subtask's attempts (which is current,
where it runs), what happens when one ends (a result, a failure and its retry, a hand-back, a
lost worker), and speculative second attempts for stragglers.

Attempt numbers per subtask only grow (the fencing token): a message about an attempt that is no
longer current is `Stale`. A failed attempt is retried after an exponential backoff with seeded
jitter, up to the task's max_retries, then the task fails. The concurrency caps (a task's
max_parallel, its type's max_running) count what occupies a slot for it: each attempt held by a
worker (a speculative one, one sent ahead by pipelining or prefetch) and, after a restart, each
subtask held for the worker that ran it. Imports only the stdlib and
`scheduling.{config,events,queue,runtimes,tasks,workers}`.
"""

from __future__ import annotations

import bisect
import heapq
import random

from herder.scheduling.config import SchedulerConfig
from herder.scheduling.events import (
    AttemptEnded,
    AttemptFailed,
    AttemptSucceeded,
    CancelAttempt,
    CompleteTask,
    Decision,
    Dispatch,
    FailTask,
    Requeue,
    RetryLater,
    Stale,
    TaskEnded,
    TaskReady,
)
from herder.scheduling.queue import ReadyQueue
from herder.scheduling.runtimes import Runtimes
from herder.scheduling.tasks import Subtask, Task, median
from herder.scheduling.workers import Worker, Workers


class Attempts:
    """Every scheduled task, its subtasks and their attempts; the retries waiting their turn."""

    def __init__(
        self,
        config: SchedulerConfig,
        rng: random.Random,
        queue: ReadyQueue,
        workers: Workers,
        runtimes: Runtimes,
    ) -> None:
        self._config = config
        self._rng = rng
        self._queue = queue
        self._workers = workers
        self._runtimes = runtimes
        self._tasks: dict[str, Task] = {}
        self._delayed: list[tuple[float, int, str, int]] = []  # (at, tiebreak, task, index)
        self._delay_seq = 0
        self._max_running = config.max_running
        #: per capped type, what occupies a slot for its tasks (see the module's docstring)
        self._type_occupying: dict[str, int] = dict.fromkeys(config.max_running, 0)
        #: the tasks known under a cap: while there is none, dispatch checks none
        self.capped = 0

    # -- queries -------------------------------------------------------------------------------

    def holder(self, task_id: str, index: int, attempt: int) -> str | None:
        """The worker that holds the attempt while it is current; None when it is not."""
        task = self._tasks.get(task_id)
        sub = task.subtasks.get(index) if task else None
        return sub.running.get(attempt) if sub is not None else None

    def wanted(self, task_id: str, index: int) -> bool:
        """Does the subtask of a live task still need its result?"""
        task = self._tasks.get(task_id)
        sub = task.subtasks.get(index) if task else None
        return task is not None and sub is not None and not task.ended and not sub.done

    def knows(self, task_id: str) -> bool:
        return task_id in self._tasks

    def at_cap(self, task: Task) -> bool:
        """May no more of the task's subtasks start now (its cap or its type's is reached)?"""
        if task.max_parallel is not None and task.occupying >= task.max_parallel:
            return True
        cap = self._max_running.get(task.type)
        return cap is not None and self._type_occupying[task.type] >= cap

    def cap_reached(self, task: Task) -> str | None:
        """Which cap holds the task's ready subtasks back: "max_parallel", "max_running" or
        None."""
        if task.max_parallel is not None and task.occupying >= task.max_parallel:
            return "max_parallel"
        cap = self._max_running.get(task.type)
        if cap is not None and self._type_occupying[task.type] >= cap:
            return "max_running"
        return None

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def counts(self, task_id: str) -> tuple[int, int]:
        """(running attempts, queued-or-delayed subtasks) of an active task."""
        task = self._tasks.get(task_id)
        if task is None:
            return 0, 0
        running = sum(len(s.running) for s in task.subtasks.values())
        waiting = sum(1 for s in task.subtasks.values() if not s.done and not s.running)
        return running, waiting

    # -- tasks ---------------------------------------------------------------------------------

    def task_ready(self, ev: TaskReady, now: float) -> list[Decision]:
        if ev.task_id in self._tasks:
            raise ValueError(f"task {ev.task_id} is already scheduled")
        if not ev.indices:
            return [CompleteTask(ev.task_id)]
        subtasks = {
            i: Subtask(
                attempts=ev.attempts_made.get(i, 0),
                failures=ev.failures_made.get(i, 0),
                ready_at=now,
                held_for=ev.held.get(i),
            )
            for i in ev.indices
        }
        task = Task(
            ev.task_id, ev.type, ev.priority, ev.max_retries, ev.labels, subtasks,
            remaining=len(subtasks), speculative=ev.speculative, max_parallel=ev.max_parallel,
            capped=ev.max_parallel is not None or ev.type in self._max_running,
        )
        self._tasks[ev.task_id] = task
        if task.capped:
            self.capped += 1
        # what was running when the master stopped runs still, most likely: it counts
        self._occupy(task, len(ev.held))
        indices = sorted(subtasks)
        task.ready.extend((i for i in indices if i not in ev.held) if ev.held else indices)
        if task.ready:
            self._queue.add(task)
        return []

    def release_held(self, task_id: str, now: float) -> list[Decision]:
        task = self._tasks.get(task_id)
        if task is None or task.ended:
            return []
        for index, sub in sorted(task.subtasks.items()):
            if sub.held_for is not None:
                sub.held_for = None
                self._occupy(task, -1)
                if not sub.done and not sub.running:
                    self._queue.push(task, index, front=False, now=now)
        return []

    def task_ended(self, ev: TaskEnded) -> list[Decision]:
        task = self._tasks.get(ev.task_id)
        if task is None or task.ended:
            return []
        task.ended = True
        task.ready.clear()
        self._queue.remove(task)
        out: list[Decision] = []
        for index, sub in sorted(task.subtasks.items()):
            for attempt, worker_id in sorted(sub.running.items()):
                out.append(CancelAttempt(worker_id, task.id, index, attempt, ev.reason))
        self._forget_if_idle(task)
        return out

    # -- attempts ------------------------------------------------------------------------------

    def start(self, task: Task, index: int, sub: Subtask, worker: Worker, now: float) -> int:
        """A new attempt of the subtask on `worker`; its number."""
        sub.attempts += 1
        attempt = sub.attempts
        sub.running[attempt] = worker.id
        sub.started[attempt] = now
        self._occupy(task, 1)
        self._workers.hold(worker, task, index, attempt)
        return attempt

    def _take_off(
        self, ev: AttemptSucceeded | AttemptFailed | AttemptEnded, handed_back: bool = False
    ) -> tuple[Task, Subtask, str] | None:
        """The running attempt `ev` names, taken off its subtask, its task's count and its
        worker's slot: (task, subtask, worker id); None when it is not running (stale)."""
        task = self._tasks.get(ev.task_id)
        sub = task.subtasks.get(ev.index) if task else None
        worker_id = sub.running.pop(ev.attempt, None) if sub else None
        if task is None or sub is None or worker_id is None:
            return None
        self._occupy(task, -1)
        self._workers.release(worker_id, ev.task_id, ev.index, ev.attempt, handed_back)
        return task, sub, worker_id

    def succeeded(self, ev: AttemptSucceeded, now: float) -> list[Decision]:
        taken = self._take_off(ev)
        if taken is None:
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        task, sub, worker_id = taken
        self._workers.record(worker_id, True)
        started = sub.started.pop(ev.attempt, None)
        if started is not None and not sub.done:
            bisect.insort(task.durations, now - started)
            self._runtimes.add(task.type, ev.duration if ev.duration is not None else now - started)
        if task.ended:  # cancelled or timed out meanwhile: the result is not wanted
            self._forget_if_idle(task)
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        if sub.done:  # a sibling attempt won already (speculation)
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        sub.done = True
        task.remaining -= 1
        out: list[Decision] = [
            CancelAttempt(w, ev.task_id, ev.index, a, "another attempt won")
            for a, w in sub.running.items()
        ]
        if task.remaining == 0:
            out.append(CompleteTask(task.id))
            self._forget_if_idle(task, force=True)
        return out

    def failed(self, ev: AttemptFailed, now: float) -> list[Decision]:
        taken = self._take_off(ev)
        if taken is None:
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        task, sub, worker_id = taken
        self._workers.record(worker_id, False)
        sub.started.pop(ev.attempt, None)
        if task.ended:
            self._forget_if_idle(task)
            return []
        if sub.done or sub.running:  # another attempt still runs or won: nothing to retry
            return []
        sub.failures += 1
        sub.avoid.add(worker_id)
        if sub.failures > task.max_retries or not ev.retry:
            return [FailTask(task.id, ev.index, ev.attempt, worker_id)]
        at = now + self._backoff(sub.failures)
        self._delay_seq += 1
        heapq.heappush(self._delayed, (at, self._delay_seq, task.id, ev.index))
        return [RetryLater(task.id, ev.index, ev.attempt, at)]

    def ended(self, ev: AttemptEnded, now: float) -> list[Decision]:
        taken = self._take_off(ev, ev.handed_back)
        if taken is None:
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        task, sub, worker_id = taken
        sub.started.pop(ev.attempt, None)
        if ev.handed_back:
            self._handed_back(worker_id, now)
        if task.ended:
            self._forget_if_idle(task)
            return []
        if sub.done or sub.running:
            return []
        self._queue.push(task, ev.index, front=True, now=now)
        return [Requeue(task.id, ev.index, ev.attempt, worker_id, "handed back")]

    def worker_lost(self, w: Worker, now: float) -> list[Decision]:
        """The worker is gone: its attempts end, and their subtasks are queued again first."""
        out: list[Decision] = []
        for task_id, index, attempt in sorted(w.held):
            task = self._tasks[task_id]
            sub = task.subtasks[index]
            if sub.running.pop(attempt, None) is not None:
                self._occupy(task, -1)
            sub.started.pop(attempt, None)
            if task.ended:
                self._forget_if_idle(task)
                continue
            if not sub.done and not sub.running:
                self._queue.push(task, index, front=True, now=now)
                out.append(Requeue(task_id, index, attempt, w.id, "worker lost"))
        return out

    def adopt(self, w: Worker, task_id: str, index: int, attempt: int, now: float) -> bool:
        """See Scheduler.adopt."""
        task = self._tasks.get(task_id)
        sub = task.subtasks.get(index) if task else None
        if task is None or sub is None:
            return False
        if sub.running.get(attempt) == w.id:
            return True  # its own already
        if (
            task.ended
            or sub.done
            or sub.running
            or sub.held_for is None
            or sub.held_for != w.uid
            or attempt != sub.attempts
        ):
            return False
        sub.held_for = None  # it occupied its slot already, held: the count stays
        sub.running[attempt] = w.id
        sub.started[attempt] = now
        self._workers.hold(w, task, index, attempt)
        return True

    def speculate(
        self, now: float, factor: float | None, after: float | None, floor: float
    ) -> list[Dispatch]:
        """See Scheduler.speculate: the second attempts, once queued work has had its turn."""
        out: list[Dispatch] = []
        workers = self._workers
        for task in list(self._tasks.values()):
            if task.ended or not task.speculative or not workers.any_credit():
                continue
            if after is not None:
                limit = max(floor, after)
            elif factor is not None and task.durations:
                limit = max(floor, factor * median(task.durations))
            else:
                continue
            for index, sub in task.subtasks.items():
                if sub.done or len(sub.running) != 1 or (task.capped and self.at_cap(task)):
                    continue
                (attempt, holder), = sub.running.items()
                if now - sub.started.get(attempt, now) <= limit:
                    continue
                worker = workers.picker(0, exclude=holder).pick(task, sub, 0)
                if worker is None:
                    continue
                attempt = self.start(task, index, sub, worker, now)
                out.append(Dispatch(worker.id, task.id, index, attempt, 0.0))
        return out

    # -- retries -------------------------------------------------------------------------------

    def release_due(self, now: float) -> None:
        """Queue the retries whose backoff is over."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, task_id, index = heapq.heappop(self._delayed)
            task = self._tasks.get(task_id)
            if task is None or task.ended:
                continue
            sub = task.subtasks[index]
            if not sub.done and not sub.running:
                self._queue.push(task, index, front=True, now=now)

    def next_wakeup(self) -> float | None:
        """When the earliest delayed retry becomes ready."""
        while self._delayed:
            at, _, task_id, _ = self._delayed[0]
            task = self._tasks.get(task_id)
            if task is None or task.ended:
                heapq.heappop(self._delayed)
                continue
            return at
        return None

    def _backoff(self, failures: int) -> float:
        cfg = self._config
        # the exponent is capped so that a huge retry budget cannot overflow the float
        base = min(cfg.retry_backoff_max, cfg.retry_backoff * 2.0 ** min(failures - 1, 60))
        return base * (1 - cfg.retry_jitter / 2 + cfg.retry_jitter * self._rng.random())

    # -- helpers -------------------------------------------------------------------------------

    def _handed_back(self, worker_id: str, now: float) -> None:
        """A worker handed back an attempt it was sent ahead (pipelining, prefetch) because
        every one of its slots runs an attempt that overran (or it drains).

        A type is pipelined by its average run time, but one task's parts may take far longer
        than the type's history says (run times that depend on the params): the attempts sent
        to wait behind such a part would wait for it while other workers idle, and work of a
        higher priority would wait behind them. The worker sees it first and hands them back;
        here, it gets no more than its slots until one of the attempts it still holds ends,
        and the types of those count as long for as long as they have run so far, until their
        run times pull the average back down.
        """
        w = self._workers.mark_stuck(worker_id)
        if w is None:
            return
        for task_id, index, attempt in w.held:
            task = self._tasks.get(task_id)
            sub = task.subtasks.get(index) if task else None
            dispatched = sub.started.get(attempt) if sub else None
            if task is not None and dispatched is not None:
                self._runtimes.at_least(task.type, now - dispatched)

    def _forget_if_idle(self, task: Task, force: bool = False) -> None:
        """Drop a finished task from memory once no attempt of it is held anywhere."""
        if not (task.ended or force or task.remaining == 0):
            return
        if any(s.running for s in task.subtasks.values()):
            task.ended = True  # keep it until the last attempt is answered
            return
        self._queue.remove(task)
        if self._tasks.pop(task.id, None) is not None and task.capped:
            self.capped -= 1
            self._occupy(task, -task.occupying)  # its subtasks still held for a worker

    def _occupy(self, task: Task, change: int) -> None:
        task.occupying += change
        if task.capped and task.type in self._type_occupying:
            self._type_occupying[task.type] += change
