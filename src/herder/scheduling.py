"""The scheduler core: a deterministic state machine, events in, decisions out (no I/O).

It owns which subtask is ready, which attempt of it is current, and which worker holds what.
Time is passed in (`now`, seconds on any monotonic clock) and randomness comes from a seeded
`random.Random`, so the same events always give the same decisions. The master feeds it what
happened (`WorkerJoined`, `AttemptSucceeded`, ...) and carries out what it decides (`Dispatch`,
`CancelAttempt`, `FailTask`, ...).

The algorithm (DESIGN.md "The scheduling algorithm"):
- strict priority between tasks; round-robin between tasks of equal priority; FIFO inside a task;
- credit-based dispatch: a worker holds at most `slots + prefetch` attempts; among eligible workers
  the least loaded one gets the subtask, preferring one that has not failed it before;
- an attempt number per subtask that only grows (the fencing token): a message about an attempt
  that is no longer current is `Stale`;
- retries with exponential backoff and jitter, up to the task's max_retries, then `FailTask`.

Its events and decisions are in `scheduling_events` (re-exported here). Imports only the stdlib
and `scheduling_events`.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from herder.scheduling_events import (
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


# -- state ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Worker:
    id: str
    slots: int
    types: frozenset[str]
    labels: frozenset[str]
    order: int
    draining: bool = False
    connected: bool = True
    unavailable: int = 0
    held: set[tuple[str, int, int]] = field(default_factory=set)  # (task, index, attempt)
    #: the held attempts of types that were not short when dispatched: while there are any,
    #: nothing waits behind them (no pipelining)
    long: set[tuple[str, int, int]] = field(default_factory=set)
    #: outcomes of its last attempts (True: succeeded), to spot a worker that fails everything
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=HEALTH_WINDOW))
    #: it handed back attempts that waited behind ones that overran: until one of those it still
    #: holds ends, it gets no more than its slots (no pipelining, no prefetch)
    stuck: bool = False


@dataclass(slots=True)
class _Subtask:
    attempts: int = 0
    failures: int = 0
    running: dict[int, str] = field(default_factory=dict)  # attempt -> worker
    done: bool = False
    avoid: set[str] = field(default_factory=set)
    ready_at: float = 0.0
    held: bool = False
    started: dict[int, float] = field(default_factory=dict)  # attempt -> dispatch time


@dataclass(slots=True)
class _Task:
    id: str
    type: str
    priority: int
    max_retries: int
    labels: frozenset[str]
    subtasks: dict[int, _Subtask]
    ready: deque[int] = field(default_factory=deque)
    remaining: int = 0
    ended: bool = False
    speculative: bool = True
    #: is its id in its priority's ring (kept here: searching a ring of 100,000 costs)
    in_ring: bool = False
    #: run times of its successful attempts, sorted (for the straggler median)
    durations: list[float] = field(default_factory=list)


HEALTH_WINDOW = 10
#: a worker is deprioritised when at least this share of its last HEALTH_WINDOW attempts failed
#: (and at least HEALTH_MIN of them) while the other workers' attempts mostly succeed
HEALTH_FAILING = 0.8
HEALTH_MIN = 5


#: a type is short (its attempts may be pipelined) once this many of its run times are known
PIPELINE_SAMPLES = 3
#: at most this many pipelined attempts per slot, however short the type
PIPELINE_DEPTH = 32
#: weight of the newest run time in a type's moving average
RUNTIME_WEIGHT = 0.2
#: a worker hands back the attempts sent ahead to wait for its slots once every slot has run
#: its attempt this many times `pipeline_below` (what is pipelined is about `pipeline_below` of
#: work per slot): they wait behind attempts that overran
OVERRUN_FACTOR = 4.0


@dataclass(slots=True)
class _Runtime:
    """A type's recent run time: an exponentially weighted moving average of its attempts."""

    average: float = 0.0
    samples: int = 0

    def add(self, seconds: float) -> None:
        self.samples += 1
        if self.samples == 1:
            self.average = seconds
        else:
            self.average += RUNTIME_WEIGHT * (seconds - self.average)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    prefetch: int = 0
    #: pipelining: a worker whose held attempts are all of short types may hold, per slot, up to
    #: this many seconds of attempts of a short type waiting (at least one, at most
    #: PIPELINE_DEPTH), so that it starts the next one the moment one ends instead of a round
    #: trip later. A type is short when its attempts' average run time is at most this many
    #: seconds; 0 turns pipelining off. Priority inversion is bounded by it: work of a higher
    #: priority waits at most about this long per slot.
    pipeline_below: float = 0.0
    retry_backoff: float = 0.1
    retry_backoff_max: float = 30.0
    #: 0..1: a retry waits backoff * (1 - jitter/2 + jitter * random())
    retry_jitter: float = 0.5

    @property
    def hand_back_after(self) -> float | None:
        """What workers are told (see OVERRUN_FACTOR); None with pipelining off: what waits on
        a worker then is what `prefetch` asked for."""
        return OVERRUN_FACTOR * self.pipeline_below if self.pipeline_below > 0 else None


class Scheduler:
    def __init__(self, config: SchedulerConfig | None = None, seed: int = 0) -> None:
        self.config = config or SchedulerConfig()
        self._rng = random.Random(seed)
        self._workers: dict[str, _Worker] = {}
        self._joined = 0
        self._tasks: dict[str, _Task] = {}
        # priority -> round-robin ring of ids of tasks that have ready subtasks
        self._rings: dict[int, deque[str]] = {}
        self._priorities: list[int] = []  # keys of _rings, highest first
        self._delayed: list[tuple[float, int, str, int]] = []  # (at, tiebreak, task, index)
        self._delay_seq = 0
        self._runtimes: dict[str, _Runtime] = {}
        #: how many tasks of each type are in a ring (have ready subtasks)
        self._ready_types: dict[str, int] = {}

    # -- feeding events ----------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Decision]:
        """Apply one event; return what must be done because of it (dispatch is separate)."""
        # the cases are tried in order: the two that come once per subtask and task first
        match event:
            case AttemptSucceeded():
                return self._attempt_succeeded(event, now)
            case TaskReady():
                return self._task_ready(event, now)
            case WorkerJoined():
                return self._worker_joined(event, now)
            case WorkerLeft():
                return self._worker_left(event.worker_id, now)
            case WorkerDraining() | WorkerDisconnected() | WorkerReconnected() | WorkerCapacity():
                self._worker_changed(event)
                return []
            case ReleaseHeld():
                return self._release_held(event.task_id, now)
            case AttemptFailed():
                return self._attempt_failed(event, now)
            case AttemptEnded():
                return self._attempt_ended(event, now)
            case TaskEnded():
                return self._task_ended(event)
        raise TypeError(f"unknown event {event!r}")

    def _worker_changed(
        self, event: WorkerDraining | WorkerDisconnected | WorkerReconnected | WorkerCapacity
    ) -> None:
        w = self._workers.get(event.worker_id)
        if w is None:
            return
        if isinstance(event, WorkerDraining):
            w.draining = True
        elif isinstance(event, WorkerCapacity):
            w.unavailable = max(0, event.unavailable)
        else:
            w.connected = isinstance(event, WorkerReconnected)

    def dispatch(self, now: float, limit: int | None = None) -> list[Dispatch]:
        """Hand ready subtasks to workers with free credit, in scheduling order."""
        self._release_due(now)
        out: list[Dispatch] = []
        if not self._rings:
            return out
        # The candidates of this round, best first: one look at every worker per round, not
        # one per dispatch (500 workers made that scan most of the master's time).
        depth = max((self.pipeline_depth(t) for t in self._ready_types), default=0)
        picker = _Picker(self, depth)
        while limit is None or len(out) < limit:
            if picker.empty():
                break
            decision = self._dispatch_one(now, picker)
            if decision is None:
                break
            out.append(decision)
        return out

    def next_wakeup(self) -> float | None:
        """When the earliest delayed retry becomes ready (so the shell knows when to dispatch)."""
        while self._delayed:
            at, _, task_id, _ = self._delayed[0]
            task = self._tasks.get(task_id)
            if task is None or task.ended:
                heapq.heappop(self._delayed)
                continue
            return at
        return None

    # -- queries -------------------------------------------------------------------------------

    def is_current(self, task_id: str, index: int, attempt: int) -> bool:
        task = self._tasks.get(task_id)
        sub = task.subtasks.get(index) if task else None
        return sub is not None and attempt in sub.running

    def worker_load(self, worker_id: str) -> tuple[int, int]:
        """(attempts held, slots)."""
        w = self._workers[worker_id]
        return len(w.held), w.slots

    def held_by(self, worker_id: str) -> list[tuple[str, int, int]]:
        w = self._workers.get(worker_id)
        return sorted(w.held) if w else []

    def has_worker(self, worker_id: str) -> bool:
        return worker_id in self._workers

    def worker_health(self, worker_id: str) -> tuple[float | None, bool]:
        """(failure rate of its last attempts or None, deprioritised?)."""
        w = self._workers.get(worker_id)
        if w is None or not w.outcomes:
            return None, False
        return w.outcomes.count(False) / len(w.outcomes), self._failing(w)

    def speculate(
        self, now: float, factor: float | None, after: float | None, floor: float
    ) -> list[Dispatch]:
        """Second attempts for slow subtasks, on workers with idle slots.

        A running subtask is slow when it has run longer than `after` seconds, or (with `factor`)
        than `factor` times the median run time of its finished siblings, and never less than
        `floor`. Only tasks that allow it, only one extra attempt per subtask, never on the
        worker that runs the first one, and only with credit left after normal dispatch.
        """
        out: list[Dispatch] = []
        self._release_due(now)
        if not self._any_credit(pipelined=False) or self._queued_work_can_run():
            return out  # no idle slot, or queued work comes first: dispatch() hands it out
        for task in list(self._tasks.values()):
            if task.ended or not task.speculative or not self._any_credit(pipelined=False):
                continue
            if after is not None:
                limit = max(floor, after)
            elif factor is not None and task.durations:
                limit = max(floor, factor * _median(task.durations))
            else:
                continue
            for index, sub in task.subtasks.items():
                if sub.done or len(sub.running) != 1:
                    continue
                (attempt, holder), = sub.running.items()
                if now - sub.started.get(attempt, now) <= limit:
                    continue
                worker = self._pick_worker(task, sub, exclude=holder, pipelined=False)
                if worker is None:
                    continue
                sub.attempts += 1
                sub.running[sub.attempts] = worker.id
                sub.started[sub.attempts] = now
                self._hold(worker, task, index, sub.attempts)
                out.append(Dispatch(worker.id, task.id, index, sub.attempts, 0.0))
        return out

    def task_counts(self, task_id: str) -> tuple[int, int]:
        """(running attempts, queued-or-delayed subtasks) of an active task."""
        task = self._tasks.get(task_id)
        if task is None:
            return 0, 0
        running = sum(len(s.running) for s in task.subtasks.values())
        waiting = sum(1 for s in task.subtasks.values() if not s.done and not s.running)
        return running, waiting

    def queue_depth(self) -> dict[int, int]:
        """Ready subtasks per priority."""
        depth: dict[int, int] = {}
        for prio, ring in self._rings.items():
            depth[prio] = sum(len(self._tasks[t].ready) for t in ring)
        return depth

    def knows_task(self, task_id: str) -> bool:
        return task_id in self._tasks

    # -- event handlers ------------------------------------------------------------------------

    def _worker_joined(self, ev: WorkerJoined, now: float) -> list[Decision]:
        out: list[Decision] = []
        if ev.worker_id in self._workers:  # a rejoin under the same id: forget the old session
            out += self._worker_left(ev.worker_id, now)
        self._joined += 1
        self._workers[ev.worker_id] = _Worker(
            ev.worker_id, max(1, ev.slots), ev.types, ev.labels, self._joined
        )
        return out

    def adopt(
        self, worker_id: str, task_id: str, index: int, attempt: int, now: float = 0.0
    ) -> bool:
        """A reconnecting worker still runs this attempt: keep it if it is still wanted.

        After a master restart the core has never seen the attempt, so it is accepted when the
        subtask has no result and no other running attempt; the attempt counter moves up to it.
        """
        w = self._workers.get(worker_id)
        task = self._tasks.get(task_id)
        sub = task.subtasks.get(index) if task else None
        if w is None or task is None or sub is None or task.ended or sub.done:
            return False
        if sub.running and attempt not in sub.running:
            return False
        if attempt < sub.attempts and attempt not in sub.running:
            return False
        if attempt in sub.running and sub.running[attempt] != worker_id:
            return False
        sub.attempts = max(sub.attempts, attempt)
        sub.running[attempt] = worker_id
        sub.started.setdefault(attempt, now)
        sub.held = False
        self._hold(w, task, index, attempt)
        self._unready(task, index)
        return True

    def _worker_left(self, worker_id: str, now: float) -> list[Decision]:
        w = self._workers.pop(worker_id, None)
        if w is None:
            return []
        out: list[Decision] = []
        for task_id, index, attempt in sorted(w.held):
            task = self._tasks[task_id]
            sub = task.subtasks[index]
            sub.running.pop(attempt, None)
            sub.started.pop(attempt, None)
            if task.ended:
                self._forget_if_idle(task)
                continue
            if not sub.done and not sub.running:
                self._make_ready(task, index, front=True, now=now)
                out.append(Requeue(task_id, index, attempt, worker_id, "worker lost"))
        return out

    def _task_ready(self, ev: TaskReady, now: float) -> list[Decision]:
        if ev.task_id in self._tasks:
            raise ValueError(f"task {ev.task_id} is already scheduled")
        subtasks = {
            i: _Subtask(
                attempts=ev.attempts_made.get(i, 0),
                failures=ev.failures_made.get(i, 0),
                ready_at=now,
                held=i in ev.held,
            )
            for i in ev.indices
        }
        task = _Task(
            ev.task_id, ev.type, ev.priority, ev.max_retries, ev.labels, subtasks,
            remaining=len(subtasks), speculative=ev.speculative,
        )
        self._tasks[ev.task_id] = task
        if not subtasks:
            del self._tasks[ev.task_id]
            return [CompleteTask(ev.task_id)]
        indices = sorted(subtasks)
        task.ready.extend((i for i in indices if i not in ev.held) if ev.held else indices)
        if task.ready:
            self._ring_add(task)
        return []

    def _release_held(self, task_id: str, now: float) -> list[Decision]:
        task = self._tasks.get(task_id)
        if task is None or task.ended:
            return []
        for index, sub in sorted(task.subtasks.items()):
            if sub.held:
                sub.held = False
                if not sub.done and not sub.running:
                    self._make_ready(task, index, front=False, now=now)
        return []

    def _attempt_succeeded(self, ev: AttemptSucceeded, now: float) -> list[Decision]:
        found = self._current(ev.task_id, ev.index, ev.attempt)
        if found is None:
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        task, sub, worker_id = found
        self._release(worker_id, ev.task_id, ev.index, ev.attempt)
        self._record_outcome(worker_id, True)
        sub.running.pop(ev.attempt)
        started = sub.started.pop(ev.attempt, None)
        if started is not None and not sub.done:
            bisect.insort(task.durations, now - started)
            runtime = self._runtime(task.type)
            runtime.add(ev.duration if ev.duration is not None else now - started)
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

    def _attempt_failed(self, ev: AttemptFailed, now: float) -> list[Decision]:
        found = self._current(ev.task_id, ev.index, ev.attempt)
        if found is None:
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        task, sub, worker_id = found
        self._release(worker_id, ev.task_id, ev.index, ev.attempt)
        self._record_outcome(worker_id, False)
        sub.running.pop(ev.attempt)
        sub.started.pop(ev.attempt, None)
        if task.ended:
            self._forget_if_idle(task)
            return []
        if sub.done or sub.running:  # another attempt still runs or won: nothing to retry
            return []
        sub.failures += 1
        sub.avoid.add(worker_id)
        if sub.failures > task.max_retries:
            return [FailTask(task.id, ev.index, ev.attempt, worker_id)]
        at = now + self._backoff(sub.failures)
        self._delay_seq += 1
        heapq.heappush(self._delayed, (at, self._delay_seq, task.id, ev.index))
        return [RetryLater(task.id, ev.index, ev.attempt, at)]

    def _attempt_ended(self, ev: AttemptEnded, now: float) -> list[Decision]:
        found = self._current(ev.task_id, ev.index, ev.attempt)
        if found is None:
            return [Stale(ev.task_id, ev.index, ev.attempt)]
        task, sub, worker_id = found
        self._release(worker_id, ev.task_id, ev.index, ev.attempt, ev.handed_back)
        sub.running.pop(ev.attempt)
        sub.started.pop(ev.attempt, None)
        if ev.handed_back:
            self._handed_back(worker_id, now)
        if task.ended:
            self._forget_if_idle(task)
            return []
        if sub.done or sub.running:
            return []
        self._make_ready(task, ev.index, front=True, now=now)
        return [Requeue(task.id, ev.index, ev.attempt, worker_id, "handed back")]

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
        w = self._workers.get(worker_id)
        if w is None or w.draining or w.stuck:
            return  # (stuck: an earlier attempt of the same hand-back told it already)
        w.stuck = True
        for task_id, index, attempt in w.held:
            task = self._tasks.get(task_id)
            sub = task.subtasks.get(index) if task else None
            dispatched = sub.started.get(attempt) if sub else None
            if task is not None and dispatched is not None:
                runtime = self._runtime(task.type)
                runtime.average = max(runtime.average, now - dispatched)

    def _task_ended(self, ev: TaskEnded) -> list[Decision]:
        task = self._tasks.get(ev.task_id)
        if task is None or task.ended:
            return []
        task.ended = True
        task.ready.clear()
        self._ring_remove(task)
        out: list[Decision] = []
        for index, sub in sorted(task.subtasks.items()):
            for attempt, worker_id in sorted(sub.running.items()):
                out.append(CancelAttempt(worker_id, task.id, index, attempt, ev.reason))
        self._forget_if_idle(task)
        return out

    # -- helpers -------------------------------------------------------------------------------

    def _current(
        self, task_id: str, index: int, attempt: int
    ) -> tuple[_Task, _Subtask, str] | None:
        task = self._tasks.get(task_id)
        sub = task.subtasks.get(index) if task else None
        if task is None or sub is None:
            return None
        worker_id = sub.running.get(attempt)
        if worker_id is None:
            return None
        return task, sub, worker_id

    def _release(
        self, worker_id: str, task_id: str, index: int, attempt: int, handed_back: bool = False
    ) -> None:
        w = self._workers.get(worker_id)
        if w is not None:
            w.held.discard((task_id, index, attempt))
            w.long.discard((task_id, index, attempt))
            if not handed_back:
                w.stuck = False  # one of them ended: a slot is free again

    def _hold(self, w: _Worker, task: _Task, index: int, attempt: int) -> None:
        key = (task.id, index, attempt)
        w.held.add(key)
        if not self._short(task.type):
            w.long.add(key)

    def is_short(self, type_name: str) -> bool:
        """Are attempts of this type pipelined (see SchedulerConfig.pipeline_below)?"""
        return self._short(type_name)

    def pipeline_depth(self, type_name: str) -> int:
        """Attempts of this type a worker may hold per slot beyond its slots (0: none)."""
        if not self._short(type_name):
            return 0
        average = self._runtimes[type_name].average
        if average <= 0:
            return PIPELINE_DEPTH
        # min() before int(): a tiny average (moving averages of 0 s run times shrink towards
        # the smallest float) makes the quotient infinite
        return max(1, int(min(PIPELINE_DEPTH, self.config.pipeline_below / average)))

    def _short(self, type_name: str) -> bool:
        if self.config.pipeline_below <= 0:
            return False
        runtime = self._runtimes.get(type_name)
        return (
            runtime is not None
            and runtime.samples >= PIPELINE_SAMPLES
            and runtime.average <= self.config.pipeline_below
        )

    def _runtime(self, type_name: str) -> _Runtime:
        runtime = self._runtimes.get(type_name)
        if runtime is None:  # (not setdefault: that would make a _Runtime on every call)
            runtime = self._runtimes[type_name] = _Runtime()
        return runtime

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        # the exponent is capped so that a huge retry budget cannot overflow the float
        base = min(cfg.retry_backoff_max, cfg.retry_backoff * 2.0 ** min(failures - 1, 60))
        return base * (1 - cfg.retry_jitter / 2 + cfg.retry_jitter * self._rng.random())

    def _release_due(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            _, _, task_id, index = heapq.heappop(self._delayed)
            task = self._tasks.get(task_id)
            if task is None or task.ended:
                continue
            sub = task.subtasks[index]
            if not sub.done and not sub.running:
                self._make_ready(task, index, front=True, now=now)

    def _make_ready(self, task: _Task, index: int, front: bool, now: float) -> None:
        if index in task.ready:
            return
        task.subtasks[index].ready_at = now
        if front:
            task.ready.appendleft(index)
        else:
            task.ready.append(index)
        if len(task.ready) == 1:
            self._ring_add(task)

    def _unready(self, task: _Task, index: int) -> None:
        if index in task.ready:
            task.ready.remove(index)
            if not task.ready:
                self._ring_remove(task)

    def _ring_add(self, task: _Task) -> None:
        ring = self._rings.get(task.priority)
        if ring is None:
            ring = self._rings[task.priority] = deque()
            self._priorities = sorted(self._rings, reverse=True)
        if not task.in_ring:
            ring.append(task.id)
            task.in_ring = True
            self._ready_types[task.type] = self._ready_types.get(task.type, 0) + 1

    def _ring_remove(self, task: _Task) -> None:
        ring = self._rings.get(task.priority)
        if ring is None or not task.in_ring:
            return
        ring.remove(task.id)
        task.in_ring = False
        self._not_ready(task.type)
        if not ring:
            del self._rings[task.priority]
            self._priorities = sorted(self._rings, reverse=True)

    def _not_ready(self, type_name: str) -> None:
        left = self._ready_types[type_name] - 1
        if left:
            self._ready_types[type_name] = left
        else:
            del self._ready_types[type_name]

    def _forget_if_idle(self, task: _Task, force: bool = False) -> None:
        """Drop a finished task from memory once no attempt of it is held anywhere."""
        if not (task.ended or force or task.remaining == 0):
            return
        if any(s.running for s in task.subtasks.values()):
            task.ended = True  # keep it until the last attempt is answered
            return
        self._ring_remove(task)
        self._tasks.pop(task.id, None)

    def _credit(self, w: _Worker, depth: int = 0) -> int:
        """Attempts `w` can take now; with `depth`, for an attempt of a short type pipelined
        that deep (see pipeline_depth)."""
        if w.draining or not w.connected:
            return 0
        if w.stuck:  # see _handed_back
            return w.slots - len(w.held) - w.unavailable
        credit = w.slots + self.config.prefetch - len(w.held) - w.unavailable
        if depth and not w.long:
            credit += w.slots * depth
        return credit

    def _any_credit(self, pipelined: bool = True) -> bool:
        if any(self._credit(w) > 0 for w in self._workers.values()):
            return True
        if not pipelined:
            return False
        # Only pipeline credit left: it is worth a look only if short work is ready.
        depth = max((self.pipeline_depth(t) for t in self._ready_types), default=0)
        return depth > 0 and any(self._credit(w, depth) > 0 for w in self._workers.values())

    def _queued_work_can_run(self) -> bool:
        """Would dispatch() hand out a ready subtask now?"""
        for ring in self._rings.values():
            for task_id in ring:
                task = self._tasks[task_id]
                if self._pick_worker(task, task.subtasks[task.ready[0]]) is not None:
                    return True
        return False

    def _record_outcome(self, worker_id: str, ok: bool) -> None:
        w = self._workers.get(worker_id)
        if w is not None:
            w.outcomes.append(ok)

    def _failing(self, w: _Worker) -> bool:
        """Most of its recent attempts failed while the others' mostly succeeded: the worker,
        not the work, is the likely cause. It still gets work when nobody else can take it."""
        if len(w.outcomes) < HEALTH_MIN or w.outcomes.count(False) < HEALTH_FAILING * len(
            w.outcomes
        ):
            return False
        others = [ok for o in self._workers.values() if o is not w for ok in o.outcomes]
        return bool(others) and others.count(True) > len(others) / 2

    def _pick_worker(
        self, task: _Task, sub: _Subtask, exclude: str | None = None, pipelined: bool = True
    ) -> _Worker | None:
        """The worker `dispatch` would give this subtask now (in `_Picker`'s order), never
        `exclude`; without `pipelined`, only one with credit left within its slots."""
        depth = self.pipeline_depth(task.type) if pipelined else 0
        return _Picker(self, depth, exclude).pick(task, sub, depth)

    def _dispatch_one(self, now: float, picker: _Picker) -> Dispatch | None:
        for prio in self._priorities:
            ring = self._rings[prio]
            for position, task_id in enumerate(ring):
                task = self._tasks[task_id]
                index = task.ready[0]
                sub = task.subtasks[index]
                worker = picker.pick(task, sub)
                if worker is None:
                    continue  # no worker can take this task's type now; the next task may
                task.ready.popleft()
                del ring[position]
                if task.ready:
                    ring.append(task_id)  # its next turn comes after every other task's
                else:
                    task.in_ring = False
                    self._not_ready(task.type)
                    if not ring:
                        del self._rings[prio]
                        self._priorities = sorted(self._rings, reverse=True)
                sub.attempts += 1
                sub.running[sub.attempts] = worker.id
                sub.started[sub.attempts] = now
                self._hold(worker, task, index, sub.attempts)
                picker.taken(worker)
                return Dispatch(
                    worker.id, task_id, index, sub.attempts, max(0.0, now - sub.ready_at)
                )
        return None


class _Picker:
    """The workers with credit, best first, for one round of `dispatch` (during which no
    outcome changes a worker's health and only the workers picked change their load).

    Best is, in this order: not avoided by the subtask (it failed there), not failing,
    least loaded relative to its slots, earliest joined. A heap on (failing, load, order)
    gives each pick in O(log workers) when the workers can all take the task; the ones that
    cannot are set aside for that pick and put back after it.
    """

    def __init__(self, sched: Scheduler, depth: int, exclude: str | None = None) -> None:
        self._s = sched
        #: the deepest pipelining of any ready type: every worker that could take anything
        self._depth = depth
        self._heap: list[tuple[int, float, int, _Worker]] = [
            self._entry(w)
            for w in sched._workers.values()
            if sched._credit(w, depth) > 0 and w.id != exclude
        ]
        heapq.heapify(self._heap)

    def _entry(self, w: _Worker) -> tuple[int, float, int, _Worker]:
        failing = 1 if self._s._failing(w) else 0
        return (failing, (len(w.held) + w.unavailable) / w.slots, w.order, w)

    def empty(self) -> bool:
        return not self._heap

    def pick(self, task: _Task, sub: _Subtask, depth: int | None = None) -> _Worker | None:
        """The best worker for this subtask (pipelined as deep as its type allows, unless
        `depth` says otherwise), or None."""
        s = self._s
        if depth is None:
            depth = s.pipeline_depth(task.type)
        aside: list[tuple[int, float, int, _Worker]] = []
        avoided: tuple[int, float, int, _Worker] | None = None
        found: tuple[int, float, int, _Worker] | None = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            w = entry[3]
            if s._credit(w, depth) <= 0 or task.type not in w.types or not task.labels <= w.labels:
                aside.append(entry)
            elif w.id in sub.avoid:
                if avoided is None:
                    avoided = entry  # the best of those it failed on: only if nobody else can
                else:
                    aside.append(entry)
            else:
                found = entry
                break
        if found is None:
            found, avoided = avoided, None
        if avoided is not None:
            aside.append(avoided)
        for entry in aside:
            heapq.heappush(self._heap, entry)
        if found is None:
            return None
        return found[3]

    def taken(self, w: _Worker) -> None:
        """`w` was given an attempt: back in line with its new load, if it has credit left."""
        if self._s._credit(w, self._depth) > 0:
            heapq.heappush(self._heap, self._entry(w))


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def handle_all(sched: Scheduler, events: Iterable[Event], now: float) -> list[Decision]:
    """Apply events in order; the concatenated decisions."""
    out: list[Decision] = []
    for ev in events:
        out += sched.handle(ev, now)
    return out
