"""The scheduler core against a model, over random sequences of events (hypothesis).

A `Harness` feeds the core random operations (workers joining, leaving, rejoining, draining,
disconnecting, losing capacity; tasks arriving and being cancelled; dispatch and speculation
rounds; successes, failures, hand-backs, late duplicates; time passing), keeps its own model of
what is outstanding (with pipelining on: each type's moving average of run times, and so each
worker's exact credit for a deep queue of short work), and checks every decision against it: a
subtask runs at most once at a time (twice only next to a speculative attempt), attempt numbers
only grow, credit is never exceeded, an attempt's holder is the worker it was given to (and no
one once it is answered), a claim in a hello is granted only for the claimer's own attempt,
strict priority and round-robin hold in every dispatch, the chosen worker is the preferred least
loaded one, the concurrency caps (a task's max_parallel, a type's max_running) are never
exceeded while a capped task never keeps a free slot from other work, and nothing is lost:
driven to quiescence, every task that was not ended completes exactly once and the core forgets
it. Imports herder.scheduling and hypothesis.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from hypothesis import HealthCheck, currently_in_test_context, given, note, settings
from hypothesis import strategies as st

from herder.scheduling import (
    HEALTH_FAILING,
    HEALTH_MIN,
    HEALTH_WINDOW,
    PIPELINE_DEPTH,
    PIPELINE_SAMPLES,
    RUNTIME_WEIGHT,
    AttemptEnded,
    AttemptFailed,
    AttemptSucceeded,
    CancelAttempt,
    CompleteTask,
    Decision,
    Dispatch,
    FailTask,
    ReleaseHeld,
    Requeue,
    RetryLater,
    Scheduler,
    SchedulerConfig,
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

Att = tuple[str, int, int]  # (task, index, attempt)
Step = tuple[str, int, int]  # (operation, a, b)

TYPES = (frozenset({"a"}), frozenset({"b"}), frozenset({"a", "b"}))
LABELS: tuple[frozenset[str], ...] = (frozenset(), frozenset({"gpu"}))
RETRIES = (0, 1, 3, 50)

# derandomize: the same examples on every run, no example database to carry state between runs
PROPS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    report_multiple_bugs=False,  # shrink one failure, quickly, rather than all of them
)


@dataclass
class MWorker:
    slots: int
    types: frozenset[str]
    labels: frozenset[str]
    order: int  # join order: the tie-break between equally good workers
    draining: bool = False
    connected: bool = True
    unavailable: int = 0
    held: set[Att] = field(default_factory=set)
    #: held attempts of a type that was not short when they were dispatched: while it holds
    #: one, nothing is pipelined to this worker
    long: set[Att] = field(default_factory=set)
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=HEALTH_WINDOW))
    #: it handed back work that waited behind attempts that overran: only its slots, no
    #: prefetch, until one of the attempts it holds ends
    stuck: bool = False


@dataclass
class MTask:
    priority: int
    type: str
    labels: frozenset[str]
    n: int
    max_retries: int
    speculative: bool
    max_parallel: int | None = None
    ended: bool = False
    completes: int = 0
    next_fresh: int = 0  # FIFO: the next never-dispatched index
    stamp: int = 0  # when it last (re)joined its priority's round-robin ring
    durations: list[float] = field(default_factory=list)  # of winning attempts, sorted


@dataclass
class MSub:
    state: str = "ready"  # ready | delayed | running | done | failed | dropped
    at: float = 0.0
    failures: int = 0
    last_attempt: int = 0
    running: dict[int, str] = field(default_factory=dict)  # attempt -> worker
    started: dict[int, float] = field(default_factory=dict)  # attempt -> dispatch time
    successes: list[tuple[int, int]] = field(default_factory=list)  # (attempt, worker order)
    avoid: set[str] = field(default_factory=set)  # workers it failed on


def median(values: Sequence[float]) -> float:
    n, mid = len(values), len(values) // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


class Harness:
    def __init__(
        self,
        prefetch: int,
        seed: int,
        homogeneous: bool,
        max_retries: int | None,
        pipeline_below: float = 0.0,
        max_running: dict[str, int] | None = None,
        max_parallel: bool = False,
    ) -> None:
        self.cfg = SchedulerConfig(
            prefetch=prefetch,
            retry_backoff=0.05,
            retry_backoff_max=0.4,
            retry_jitter=0.5,
            pipeline_below=pipeline_below,
            max_running=max_running or {},
        )
        #: do submissions draw a max_parallel
        self.draw_max_parallel = max_parallel
        #: per type, the run times the core has seen: (samples, moving average)
        self.runtimes: dict[str, tuple[int, float]] = {}
        self.s = Scheduler(self.cfg, seed)
        self.homogeneous = homogeneous
        self.max_retries = max_retries  # None: drawn per task
        self.now = 0.0
        self.workers: dict[str, MWorker] = {}
        self.tasks: dict[str, MTask] = {}
        self.subs: dict[tuple[str, int], MSub] = {}
        self.answered: list[Att] = []  # attempts that are no longer current
        self.lost: list[tuple[Att, int]] = []  # attempts requeued from a lost worker (its order)
        self.clock = 0  # orders ring entries and worker sessions
        self.n_workers = 0
        self.speculated = 0

    # -- the model's view ---------------------------------------------------------------------

    def tick_stamp(self) -> int:
        self.clock += 1
        return self.clock

    def ready(self, task_id: str) -> list[int]:
        t = self.tasks[task_id]
        return [i for i in range(t.n) if self.subs[task_id, i].state == "ready"]

    def make_ready(self, task_id: str, index: int, stamp: int) -> None:
        if not self.ready(task_id):
            self.tasks[task_id].stamp = stamp  # it joins the end of its ring
        self.subs[task_id, index].state = "ready"

    def short(self, type_name: str) -> bool:
        """Pipelined: enough run times seen, and on average under `pipeline_below`."""
        samples, average = self.runtimes.get(type_name, (0, 0.0))
        below = self.cfg.pipeline_below
        return below > 0 and samples >= PIPELINE_SAMPLES and average <= below

    def depth(self, type_name: str) -> int:
        """Attempts of the type a worker may hold per slot beyond its slots and prefetch."""
        if not self.short(type_name):
            return 0
        average = self.runtimes[type_name][1]
        if average <= 0:
            return PIPELINE_DEPTH
        return max(1, int(min(PIPELINE_DEPTH, self.cfg.pipeline_below / average)))

    def ran(self, type_name: str, seconds: float) -> None:
        """A run time the core takes into the type's moving average."""
        samples, average = self.runtimes.get(type_name, (0, 0.0))
        samples += 1
        average = seconds if samples == 1 else average + RUNTIME_WEIGHT * (seconds - average)
        self.runtimes[type_name] = (samples, average)

    def eligible(self, task: MTask, w: MWorker, pipelined: bool = True) -> bool:
        """Can `w` take a subtask of `task` now? Without `pipelined`, as speculation asks:
        within its slots and prefetch only."""
        if w.stuck:
            room = w.slots
        else:
            room = w.slots + self.cfg.prefetch
            depth = self.depth(task.type) if pipelined else 0
            if depth and not w.long:
                room += w.slots * depth
        return (
            w.connected
            and not w.draining
            and len(w.held) + w.unavailable < room
            and task.type in w.types
            and task.labels <= w.labels
        )

    def failing(self, w: MWorker) -> bool:
        """Most of its recent attempts failed while the other workers' mostly succeeded."""
        outs = w.outcomes
        if len(outs) < HEALTH_MIN or outs.count(False) < HEALTH_FAILING * len(outs):
            return False
        others = [ok for o in self.workers.values() if o is not w for ok in o.outcomes]
        return bool(others) and others.count(True) > len(others) / 2

    def can_run_now(self, task_id: str) -> bool:
        task = self.tasks[task_id]
        if self.at_cap(task_id):
            return False
        return any(self.eligible(task, w) for w in self.workers.values())

    def running(self, task_id: str) -> int:
        """Attempts of the task held by workers (what its max_parallel counts)."""
        return sum(len(self.subs[task_id, i].running) for i in range(self.tasks[task_id].n))

    def type_running(self, type_name: str) -> int:
        """Attempts of the type held by workers (what its max_running counts)."""
        return sum(self.running(t) for t, task in self.tasks.items() if task.type == type_name)

    def at_cap(self, task_id: str) -> bool:
        """May no more of the task's subtasks start now (its cap or its type's is reached)?"""
        task = self.tasks[task_id]
        cap = self.cfg.max_running.get(task.type)
        return (task.max_parallel is not None and self.running(task_id) >= task.max_parallel) or (
            cap is not None and self.type_running(task.type) >= cap
        )

    def held(self) -> list[tuple[Att, str]]:
        return sorted((a, wid) for wid, w in self.workers.items() for a in w.held)

    def live_task(self, task_id: str) -> bool:
        t = self.tasks[task_id]
        return not t.ended and t.completes == 0

    def wanted(self, t: str, i: int) -> bool:
        """Would the core still act on the end of an attempt of this subtask?"""
        sub = self.subs[t, i]
        return self.live_task(t) and sub.state != "done" and not sub.running

    # -- workers --------------------------------------------------------------------------------

    def op_join(self, a: int, b: int) -> None:
        if len(self.workers) >= 4:
            return
        self.n_workers += 1
        wid = f"w{self.n_workers}"
        if self.homogeneous:
            self.join(wid, 1 + a % 3, TYPES[2], LABELS[1])
        else:
            self.join(wid, 1 + a % 3, TYPES[b % 3], LABELS[b // 3 % 2])

    def join(self, wid: str, slots: int, types: frozenset[str], labels: frozenset[str]) -> None:
        decisions = self.s.handle(WorkerJoined(wid, slots, types, labels), self.now)
        self.lose(wid, decisions)
        self.workers[wid] = MWorker(slots, types, labels, self.tick_stamp())

    def pick_worker(self, k: int) -> str | None:
        ids = sorted(self.workers)
        return ids[k % len(ids)] if ids else None

    def op_leave(self, a: int, b: int) -> None:
        wid = self.pick_worker(a)
        if wid is not None:
            self.lose(wid, self.s.handle(WorkerLeft(wid), self.now))

    def op_rejoin(self, a: int, b: int) -> None:
        wid = self.pick_worker(a)
        if wid is not None:
            w = self.workers[wid]
            self.join(wid, 1 + b % 3, w.types, w.labels)

    def lose(self, wid: str, decisions: list[Decision]) -> None:
        """The model's side of a worker going away: what it held is requeued if still wanted."""
        w = self.workers.pop(wid, None)
        expected: list[Decision] = []
        stamp = self.tick_stamp()
        for att in sorted(w.held) if w else []:
            t, i, a = att
            self.answered.append(att)
            sub = self.subs[t, i]
            del sub.running[a], sub.started[a]
            w.long.discard(att)
            if self.wanted(t, i):
                expected.append(Requeue(t, i, a, wid, "worker lost"))
                self.lost.append((att, w.order if w else 0))
                self.make_ready(t, i, stamp)
        assert Counter(decisions) == Counter(expected), decisions

    def op_drain(self, a: int, b: int) -> None:
        wid = self.pick_worker(a)
        if wid is not None and b % 2 == 0:  # rarer than the other worker events
            assert self.s.handle(WorkerDraining(wid), self.now) == []
            self.workers[wid].draining = True

    def op_disconnect(self, a: int, b: int) -> None:
        """A dropped connection, or its return: the attempts stay, new work does not come."""
        wid = self.pick_worker(a)
        if wid is None:
            return
        w = self.workers[wid]
        event = WorkerReconnected(wid) if not w.connected else WorkerDisconnected(wid)
        assert self.s.handle(event, self.now) == []
        w.connected = not w.connected

    def op_capacity(self, a: int, b: int) -> None:
        """Slots blocked by abandoned threads."""
        wid = self.pick_worker(a)
        if wid is not None:
            assert self.s.handle(WorkerCapacity(wid, b % 3), self.now) == []
            self.workers[wid].unavailable = b % 3

    # -- tasks ----------------------------------------------------------------------------------

    def op_submit(self, a: int, b: int) -> None:
        task_id = f"t{len(self.tasks)}"
        retries = RETRIES[b // 4 % 4] if self.max_retries is None else self.max_retries
        labels = LABELS[0] if self.homogeneous or b % 5 else LABELS[1]
        task = MTask(a % 3, "ab"[b % 2], labels, 1 + a // 3 % 6, retries, b // 16 % 3 != 0)
        if self.draw_max_parallel:
            task.max_parallel = (None, 1, 2)[b // 48 % 3]
        ev = TaskReady(
            task_id,
            task.type,
            task.priority,
            list(range(task.n)),
            retries,
            labels,
            speculative=task.speculative,
            max_parallel=task.max_parallel,
        )
        assert self.s.handle(ev, self.now) == []
        self.tasks[task_id] = task
        task.stamp = self.tick_stamp()
        for i in range(task.n):
            self.subs[task_id, i] = MSub()

    def op_cancel(self, a: int, b: int) -> None:
        if self.tasks and b % 2 == 0:  # rarer than the other task events
            self.end(sorted(self.tasks)[a % len(self.tasks)], "cancelled")

    def end(self, task_id: str, reason: str) -> None:
        decisions = self.s.handle(TaskEnded(task_id, reason), self.now)
        if not self.live_task(task_id):
            assert decisions == [], decisions
            return
        expected = [
            CancelAttempt(wid, t, i, a, reason) for (t, i, a), wid in self.held() if t == task_id
        ]
        assert Counter(decisions) == Counter(expected), decisions
        self.tasks[task_id].ended = True
        for i in range(self.tasks[task_id].n):
            sub = self.subs[task_id, i]
            if sub.state in ("ready", "delayed"):
                sub.state = "dropped"

    def op_tick(self, a: int, b: int) -> None:
        self.now += (a % 10) / 20

    # -- dispatch and speculation ---------------------------------------------------------------

    def release_due(self) -> None:
        """Retries whose time has come are queued (together: their order among themselves is
        the core's business)."""
        stamp = self.tick_stamp()
        for (t, i), sub in sorted(self.subs.items()):
            if sub.state == "delayed" and sub.at <= self.now and not self.tasks[t].ended:
                self.make_ready(t, i, stamp)

    def queued_work_can_run(self) -> bool:
        return any(self.ready(t) and self.can_run_now(t) for t in self.tasks)

    def op_dispatch(self, a: int, b: int) -> None:
        limit = None if a % 3 else 1 + b % 3
        self.release_due()
        decisions = self.s.dispatch(self.now, limit)
        for d in decisions:
            self.check_dispatch(d)
            self.apply_dispatch(d)
            if self.ready(d.task_id):
                self.tasks[d.task_id].stamp = self.tick_stamp()  # to the end of the ring
        if limit is None or len(decisions) < limit:
            # work-conserving: a round ends only when nothing ready can go anywhere
            assert not self.queued_work_can_run()

    def check_dispatch(self, d: Dispatch) -> None:
        task = self.tasks[d.task_id]
        sub = self.subs[d.task_id, d.index]
        assert self.live_task(d.task_id), d
        assert sub.state == "ready" and not sub.running, (d, sub)  # never two at once
        assert d.attempt > sub.last_attempt, (d, sub)  # the fencing token only grows
        assert not self.at_cap(d.task_id), d  # a cap is never exceeded
        if sub.last_attempt == 0:
            assert d.index == task.next_fresh, d  # FIFO inside a task
            task.next_fresh += 1
        self.check_worker_choice(d, task, sub, exclude=None)
        self.check_order(d, task)

    def check_worker_choice(
        self, d: Dispatch, task: MTask, sub: MSub, exclude: str | None, pipelined: bool = True
    ) -> None:
        """Among workers with credit that take the type and labels: one the subtask has not
        failed on, then a healthy one, then the least loaded, then the earliest joined."""

        def rank(wid: str) -> tuple[bool, bool, Fraction, int]:
            w = self.workers[wid]
            load = Fraction(len(w.held) + w.unavailable, w.slots)
            return wid in sub.avoid, self.failing(w), load, w.order

        able = [
            wid
            for wid, w in self.workers.items()
            if self.eligible(task, w, pipelined) and wid != exclude
        ]
        assert d.worker_id in able, (d, able)  # credit, connected, not draining, type, labels
        assert d.worker_id == min(able, key=rank), (d, {wid: rank(wid) for wid in able})

    def check_order(self, d: Dispatch, task: MTask) -> None:
        """Strict priority, then round-robin: a task that waits longer and could run goes first."""
        for u, other in self.tasks.items():
            if u == d.task_id or not self.ready(u):
                continue
            if other.priority > task.priority:
                assert not self.can_run_now(u), ("priority inverted", d, u)
            if other.priority == task.priority and other.stamp < task.stamp:
                assert not self.can_run_now(u), ("round-robin turn skipped", d, u)

    def apply_dispatch(self, d: Dispatch) -> None:
        sub = self.subs[d.task_id, d.index]
        sub.state = "running"
        sub.last_attempt = d.attempt
        sub.running[d.attempt] = d.worker_id
        sub.started[d.attempt] = self.now
        self.workers[d.worker_id].held.add((d.task_id, d.index, d.attempt))
        if not self.short(self.tasks[d.task_id].type):
            self.workers[d.worker_id].long.add((d.task_id, d.index, d.attempt))

    def spec_limit(
        self, task: MTask, factor: float | None, after: float | None, floor: float
    ) -> float | None:
        """How long an attempt of this task may run before a second one is started."""
        if not task.speculative:
            return None
        if after is not None:
            return max(floor, after)
        if factor is not None and task.durations:
            return max(floor, factor * median(task.durations))
        return None

    def slow(self, t: str, i: int, limit: float | None) -> str | None:
        """The worker of the lone attempt of this subtask if it runs past `limit`."""
        sub = self.subs[t, i]
        if limit is None or not self.live_task(t) or sub.state == "done" or len(sub.running) != 1:
            return None
        ((attempt, holder),) = sub.running.items()
        return holder if self.now - sub.started[attempt] > limit else None

    def op_speculate(self, a: int, b: int) -> None:
        """The shell's straggler timer: some time passes, then `speculate`."""
        self.now += 0.25
        if a % 2:
            self.op_dispatch(1, 0)  # as a careful shell would: queued work first
        after = (a % 8) / 8 if b % 3 == 0 else None
        factor = 1.0 + a % 3 if b % 3 == 1 else None
        floor = (a // 8 % 3) / 4
        limits = {t: self.spec_limit(task, factor, after, floor) for t, task in self.tasks.items()}
        self.release_due()
        queued = self.queued_work_can_run()
        decisions = self.s.speculate(self.now, factor, after, floor)
        if queued:  # a second attempt only on a slot that no queued subtask can use
            assert decisions == [], ("speculation ahead of queued work", decisions)
            return
        for d in decisions:
            holder = self.slow(d.task_id, d.index, limits[d.task_id])
            assert holder is not None and d.worker_id != holder, (d, holder)
            sub = self.subs[d.task_id, d.index]
            assert d.attempt > sub.last_attempt, d
            assert not self.at_cap(d.task_id), d  # speculative attempts count
            self.check_worker_choice(d, self.tasks[d.task_id], sub, holder, pipelined=False)
            self.apply_dispatch(d)
            self.speculated += 1
        # every slow subtask got its second attempt unless no other worker could take it, or
        # a cap holds it back
        for t, i in self.subs:
            holder = self.slow(t, i, limits[t])
            if holder is not None and not self.at_cap(t):
                task = self.tasks[t]
                able = [w for wid, w in self.workers.items() if wid != holder]
                assert not any(self.eligible(task, w, pipelined=False) for w in able), (t, i)

    # -- answers from workers -------------------------------------------------------------------

    def take_held(self, k: int, handed_back: bool = False) -> tuple[Att, str, float] | None:
        """Take one held attempt off its worker (it answers); with when it was started."""
        held = self.held()
        if not held:
            return None
        att, wid = held[k % len(held)]
        self.workers[wid].held.remove(att)
        self.workers[wid].long.discard(att)
        if not handed_back:
            self.workers[wid].stuck = False  # one of its attempts ended
        self.answered.append(att)
        sub = self.subs[att[0], att[1]]
        del sub.running[att[2]]
        return att, wid, sub.started.pop(att[2])

    def op_succeed(self, a: int, b: int) -> None:
        taken = self.take_held(a)
        if taken is not None:
            self.succeed(*taken)

    def succeed(self, att: Att, wid: str, started: float) -> None:
        t, i, a = att
        decisions = self.s.handle(AttemptSucceeded(t, i, a), self.now)
        self.workers[wid].outcomes.append(True)
        task, sub = self.tasks[t], self.subs[t, i]
        if sub.state != "done":  # its run time counts, even for a task that ended meanwhile
            self.ran(task.type, self.now - started)
        if not self.live_task(t) or sub.state == "done":  # ended, or a sibling attempt won
            assert decisions == [Stale(t, i, a)], decisions
            return
        bisect.insort(task.durations, self.now - started)
        sub.state = "done"
        sub.successes.append((a, self.workers[wid].order))
        expected: list[Decision] = [
            CancelAttempt(w, t, i, other, "another attempt won") for other, w in sub.running.items()
        ]
        if all(self.subs[t, j].state == "done" for j in range(task.n)):
            expected.append(CompleteTask(t))
            task.completes += 1
        assert Counter(decisions) == Counter(expected), decisions

    def op_fail(self, a: int, b: int) -> None:
        taken = self.take_held(a)
        if taken is not None:
            self.fail(*taken)

    def op_flaky(self, a: int, b: int) -> None:
        """An attempt on the first worker fails: that worker fails most of what it gets."""
        first = self.pick_worker(0)
        held = self.held()
        mine = [k for k, (_, wid) in enumerate(held) if wid == first]
        if mine:
            taken = self.take_held(mine[a % len(mine)])
            assert taken is not None
            self.fail(*taken)

    def fail(self, att: Att, wid: str, started: float) -> None:
        t, i, attempt = att
        decisions = self.s.handle(AttemptFailed(t, i, attempt), self.now)
        self.workers[wid].outcomes.append(False)
        task, sub = self.tasks[t], self.subs[t, i]
        if not self.wanted(t, i):  # ended, or another attempt runs or won: no retry
            assert decisions == [], decisions
            return
        sub.failures += 1
        sub.avoid.add(wid)
        if sub.failures > task.max_retries:
            assert decisions == [FailTask(t, i, attempt, wid)], decisions
            sub.state = "failed"
            self.end(t, "failed")  # what the master does on FailTask
            return
        (retry,) = decisions
        assert isinstance(retry, RetryLater), retry
        assert (retry.task_id, retry.index, retry.attempt) == (t, i, attempt)
        base = min(self.cfg.retry_backoff_max, self.cfg.retry_backoff * 2 ** (sub.failures - 1))
        assert base * 0.75 - 1e-9 <= retry.at - self.now <= base * 1.25 + 1e-9, retry
        sub.state, sub.at = "delayed", retry.at

    def op_handback(self, a: int, b: int) -> None:
        """An attempt handed back: cancelled on request, or (odd `b`) one that waited behind
        attempts that overran, after which its worker gets only its slots for a while."""
        handed_back = bool(b % 2)
        taken = self.take_held(a, handed_back)
        if taken is None:
            return
        (t, i, attempt), wid, _ = taken
        decisions = self.s.handle(AttemptEnded(t, i, attempt, handed_back), self.now)
        w = self.workers[wid]
        if handed_back and not w.draining and not w.stuck:
            # the types of what it still holds count as long as they have run so far
            for ht, hi, ha in w.held:
                kind = self.tasks[ht].type
                samples, average = self.runtimes.get(kind, (0, 0.0))
                ran_for = self.now - self.subs[ht, hi].started[ha]
                self.runtimes[kind] = (samples, max(average, ran_for))
            w.stuck = True
        if not self.wanted(t, i):
            assert decisions == [], decisions
            return
        assert decisions == [Requeue(t, i, attempt, wid, "handed back")], decisions
        self.make_ready(t, i, self.tick_stamp())

    def op_claim(self, a: int, b: int) -> None:
        """A worker's hello claims an attempt: one it holds, another worker's, one no longer
        current, or one of a subtask waiting in the queue (the number it had or the next).
        Only its own is granted, and a claim changes nothing."""
        wid = self.pick_worker(a)
        if wid is None:
            return
        waiting = [
            (t, i, sub.last_attempt + b % 2)
            for (t, i), sub in sorted(self.subs.items())
            if sub.state in ("ready", "delayed")
        ]
        candidates = [att for att, _ in self.held()] + self.answered + waiting
        if not candidates:
            return
        t, i, attempt = candidates[b % len(candidates)]
        before = (
            {w: self.s.held_by(w) for w in self.workers},
            self.s.queue_depth(),
            self.s.next_wakeup(),
        )
        granted = self.s.adopt(wid, t, i, attempt, now=self.now)
        assert granted == ((t, i, attempt) in self.workers[wid].held), (wid, t, i, attempt)
        after = (
            {w: self.s.held_by(w) for w in self.workers},
            self.s.queue_depth(),
            self.s.next_wakeup(),
        )
        assert before == after

    def op_late(self, a: int, b: int) -> None:
        """A duplicate or late message about an attempt that is no longer current."""
        if not self.answered:
            return
        t, i, attempt = self.answered[a % len(self.answered)]
        event = (AttemptSucceeded, AttemptFailed, AttemptEnded)[b % 3](t, i, attempt)
        before = {wid: (self.s.worker_load(wid), self.s.worker_health(wid)) for wid in self.workers}
        assert self.s.handle(event, self.now) == [Stale(t, i, attempt)]
        after = {wid: (self.s.worker_load(wid), self.s.worker_health(wid)) for wid in self.workers}
        assert before == after

    # -- invariants and the end -----------------------------------------------------------------

    def check_invariants(self) -> None:
        for wid, w in self.workers.items():
            assert self.s.has_worker(wid)
            assert self.s.worker_load(wid) == (len(w.held), w.slots)
            # credit is never exceeded
            assert len(w.held) <= w.slots + self.cfg.prefetch + w.slots * PIPELINE_DEPTH
            if not self.cfg.pipeline_below:
                assert len(w.held) <= w.slots + self.cfg.prefetch
            assert self.s.held_by(wid) == sorted(w.held)
            assert self.s.worker_health(wid)[1] == self.failing(w)
            for t, i, a in w.held:
                assert self.s.holder(t, i, a) == wid  # its frames about it count, no one else's
        for t, i, a in self.answered:
            if a not in self.subs[t, i].running:
                assert self.s.holder(t, i, a) is None
        for sub in self.subs.values():
            assert len(sub.running) <= 2  # one attempt, and at most one speculative beside it
        for t, task in self.tasks.items():  # the caps hold
            if task.max_parallel is not None:
                assert self.running(t) <= task.max_parallel, t
        for kind, cap in self.cfg.max_running.items():
            assert self.type_running(kind) <= cap, kind
        delayed = [
            sub.at
            for (t, _), sub in self.subs.items()
            if sub.state == "delayed" and not self.tasks[t].ended
        ]
        assert self.s.next_wakeup() == (min(delayed) if delayed else None)

    def quiesce(self) -> None:
        """Add a worker that can run anything, then answer everything until nothing is left."""
        self.join("final", 2, TYPES[2], LABELS[1])
        for _ in range(10_000):
            self.op_dispatch(1, 0)
            held = self.held()
            for _ in held:
                taken = self.take_held(0)
                assert taken is not None
                self.succeed(*taken)
            self.check_invariants()
            if held:
                continue
            wake = self.s.next_wakeup()
            if wake is None:
                return
            self.now = max(self.now, wake)
        raise AssertionError("no quiescence")

    def check_final(self) -> None:
        for task_id, task in self.tasks.items():
            assert not self.s.knows_task(task_id), task_id  # nothing kept in memory
            if task.ended:
                assert task.completes == 0, task_id
                continue
            assert task.completes == 1, task_id  # nothing lost
            for i in range(task.n):
                assert len(self.subs[task_id, i].successes) == 1, (task_id, i)
        for (t, i, a), order in self.lost:
            if not self.tasks[t].ended:
                ((won, won_order),) = self.subs[t, i].successes
                assert won > a and won_order != order, (t, i, a)
        assert self.s.queue_depth() == {}
        assert self.s.next_wakeup() is None
        assert all(self.s.worker_load(wid)[0] == 0 for wid in self.workers)


Op = Callable[[Harness, int, int], None]
OPS: dict[str, Op] = {
    name.removeprefix("op_"): fn for name, fn in vars(Harness).items() if name.startswith("op_")
}


def ops(*weighted: tuple[str, int]) -> st.SearchStrategy[list[Step]]:
    """Lists of (operation, a, b); an operation drawn in proportion to its weight.

    Each step is drawn as one integer and decoded: a quarter as many draws as a tuple of three,
    which keeps generating and shrinking fast.
    """
    names = [name for name, weight in weighted for _ in range(weight)]
    assert set(names) <= set(OPS), set(names) - set(OPS)

    def decode(n: int) -> Step:
        n, k = divmod(n, len(names))
        # hypothesis favours small numbers; a multiplicative hash spreads them over a and b
        n = n * 2654435761 % 2**32
        return names[k], n % 1000, n // 1000 % 1000

    return st.lists(st.integers(0, 2**30).map(decode), min_size=20, max_size=80)


EVERYTHING = ops(
    ("join", 2),
    ("leave", 1),
    ("rejoin", 1),
    ("drain", 1),
    ("disconnect", 1),
    ("capacity", 1),
    ("submit", 3),
    ("tick", 2),
    ("dispatch", 4),
    ("speculate", 1),
    ("succeed", 4),
    ("fail", 2),
    ("handback", 1),
    ("cancel", 1),
    ("late", 1),
    ("claim", 2),
)
NO_ENDINGS = ops(
    ("join", 2),
    ("leave", 1),
    ("rejoin", 1),
    ("submit", 3),
    ("tick", 2),
    ("dispatch", 4),
    ("speculate", 1),
    ("succeed", 4),
    ("fail", 2),
    ("late", 1),
)
SPECULATION = ops(  # stragglers need idle slots: few tasks, many answers
    ("join", 2),
    ("submit", 1),
    ("dispatch", 1),
    ("speculate", 3),
    ("succeed", 2),
    ("fail", 1),
    ("leave", 1),
)
FLAKY_WORKER = ops(
    ("join", 2),
    ("submit", 2),
    ("dispatch", 3),
    ("succeed", 2),
    ("flaky", 4),
    ("tick", 1),
)
CHURN = ops(
    ("join", 3),
    ("leave", 3),
    ("rejoin", 2),
    ("submit", 2),
    ("dispatch", 4),
    ("succeed", 2),
    ("claim", 2),
)


def run(h: Harness, steps: list[Step]) -> Harness:
    if currently_in_test_context():  # a failing example prints its steps as decode(n)
        note(f"decoded steps: {steps}")
    for name, a, b in steps:
        OPS[name](h, a, b)
        h.check_invariants()
    h.quiesce()
    h.check_final()
    return h


@PROPS
@given(
    steps=EVERYTHING,
    prefetch=st.integers(0, 2),
    seed=st.integers(0, 3),
    homogeneous=st.booleans(),
)
def test_every_decision_matches_the_model(
    steps: list[Step], prefetch: int, seed: int, homogeneous: bool
) -> None:
    run(Harness(prefetch, seed, homogeneous, max_retries=None), steps)


# Pipelining: once a type has PIPELINE_SAMPLES run times whose moving average is under
# `pipeline_below`, a worker that holds nothing long may hold `slots * depth` more of it (the
# deep queue of W1). The harness's run times are the model's clock between a dispatch and its
# answer (0 when no tick came between: the deepest queue), so types go short and long again as
# ticks come and go; the model keeps the same moving average to know the credit exactly.
PIPELINED = ops(
    ("join", 2),
    ("leave", 1),
    ("rejoin", 1),
    ("disconnect", 1),
    ("capacity", 1),
    ("submit", 3),
    ("tick", 2),
    ("dispatch", 4),
    ("speculate", 1),
    ("succeed", 6),
    ("fail", 1),
    ("handback", 2),
    ("cancel", 1),
    ("late", 1),
)


@settings(PROPS, max_examples=300)
@given(
    steps=PIPELINED,
    prefetch=st.integers(0, 2),
    seed=st.integers(0, 3),
    homogeneous=st.booleans(),
    pipeline_below=st.sampled_from([0.05, 0.3, 10.0]),
)
def test_every_decision_matches_the_model_with_pipelining(
    steps: list[Step], prefetch: int, seed: int, homogeneous: bool, pipeline_below: float
) -> None:
    h = run(Harness(prefetch, seed, homogeneous, None, pipeline_below), steps)
    note(f"run times seen: {h.runtimes}")


@PROPS
@given(steps=NO_ENDINGS, prefetch=st.integers(0, 1))
def test_with_retries_to_spare_every_task_completes(steps: list[Step], prefetch: int) -> None:
    h = run(Harness(prefetch, 0, homogeneous=False, max_retries=1_000), steps)
    assert all(t.completes == 1 for t in h.tasks.values())


@PROPS
@given(steps=CHURN, homogeneous=st.booleans())
def test_work_of_lost_workers_completes_elsewhere_with_a_higher_attempt(
    steps: list[Step], homogeneous: bool
) -> None:
    h = run(Harness(0, 0, homogeneous, max_retries=0), steps)
    assert all(t.completes == 1 for t in h.tasks.values())
    for (t, i, a), _ in h.lost:
        assert h.subs[t, i].successes[0][0] > a


@PROPS
@given(steps=SPECULATION, prefetch=st.integers(0, 1), homogeneous=st.booleans())
def test_speculation_keeps_one_result_per_subtask(
    steps: list[Step], prefetch: int, homogeneous: bool
) -> None:
    run(Harness(prefetch, 0, homogeneous, max_retries=None), steps)


@PROPS
@given(steps=FLAKY_WORKER, homogeneous=st.booleans())
def test_a_worker_that_fails_everything_is_passed_over(
    steps: list[Step], homogeneous: bool
) -> None:
    run(Harness(0, 0, homogeneous, max_retries=1_000), steps)


@PROPS
@given(
    held=st.dictionaries(
        st.integers(0, 4), st.tuples(st.sampled_from(["u1", "u2"]), st.integers(1, 3))
    ),
    uids=st.tuples(*[st.sampled_from(["u1", "u2", "u3", None])] * 3),
    claims=st.lists(
        st.tuples(st.sampled_from(["w1", "w2", "w3"]), st.integers(0, 5), st.integers(0, 4)),
        max_size=25,
    ),
)
def test_after_a_restart_a_held_subtask_goes_only_to_its_worker_uid_at_its_attempt(
    held: dict[int, tuple[str, int]],
    uids: tuple[str | None, str | None, str | None],
    claims: list[tuple[str, int, int]],
) -> None:
    """A restarted core holds what was running for the worker uid the store keeps, at the
    attempt the store knows: the first such claim from a worker of that uid, and only it, is
    granted; a worker of another uid or of none (whatever its name) is refused, and nothing
    else can be claimed."""
    s = Scheduler(SchedulerConfig(), 0)
    uid_of = dict(zip(("w1", "w2", "w3"), uids, strict=True))
    for wid, uid in uid_of.items():
        s.handle(WorkerJoined(wid, 8, TYPES[2], uid=uid), 0.0)
    attempts = {i: a for i, (_, a) in held.items()}
    s.handle(
        TaskReady("r", "a", 0, range(5), attempts_made=attempts,
                  held={i: u for i, (u, _) in held.items()}),
        0.0,
    )
    owned: dict[int, tuple[str, int]] = {}
    for wid, index, attempt in claims:
        mine = owned.get(index) == (wid, attempt)
        granted = mine or (index not in owned and held.get(index) == (uid_of[wid], attempt))
        assert s.adopt(wid, "r", index, attempt) == granted, (wid, index, attempt)
        if granted:
            owned[index] = (wid, attempt)
        for i, (w, a) in owned.items():
            assert s.holder("r", i, a) == w
    for wid in ("w1", "w2", "w3"):
        assert s.held_by(wid) == sorted(("r", i, a) for i, (w, a) in owned.items() if w == wid)
    # the subtasks not held were queued from the start; the held ones nobody claimed wait
    assert s.queue_depth() == ({0: 5 - len(held)} if len(held) < 5 else {})


CAPS = st.sampled_from([{"a": 1}, {"a": 2, "b": 1}, {"b": 3}, {}])


@PROPS
@given(
    steps=EVERYTHING,
    prefetch=st.integers(0, 2),
    seed=st.integers(0, 3),
    homogeneous=st.booleans(),
    max_running=CAPS,
)
def test_caps_are_never_exceeded_and_free_slots_go_to_other_work(
    steps: list[Step], prefetch: int, seed: int, homogeneous: bool, max_running: dict[str, int]
) -> None:
    """Types capped by max_running, tasks by max_parallel: no dispatch nor speculative attempt
    passes a cap, a dispatch round leaves no slot idle that uncapped work could use (the
    model's work-conserving check), and every task still completes (no deadlock), across
    workers lost, rejoining and draining."""
    run(Harness(prefetch, seed, homogeneous, None, 0.0, max_running, max_parallel=True), steps)


@settings(PROPS, max_examples=100)
@given(
    steps=PIPELINED,
    prefetch=st.integers(0, 2),
    seed=st.integers(0, 3),
    pipeline_below=st.sampled_from([0.05, 10.0]),
    max_running=CAPS,
)
def test_caps_count_the_attempts_sent_ahead_by_pipelining(
    steps: list[Step], prefetch: int, seed: int, pipeline_below: float, max_running: dict[str, int]
) -> None:
    run(Harness(prefetch, seed, False, None, pipeline_below, max_running, True), steps)


@PROPS
@given(
    held=st.sets(st.integers(0, 5)),
    cap=st.integers(1, 4),
    by_type=st.booleans(),
    claims=st.lists(st.integers(0, 5), max_size=8),
    release=st.booleans(),
)
def test_after_a_restart_subtasks_held_for_their_worker_count_towards_the_caps(
    held: set[int], cap: int, by_type: bool, claims: list[int], release: bool
) -> None:
    """A restarted core counts what was running (held for its worker) against max_parallel
    or max_running: a claim back never takes the task past its cap, and each dispatch round
    fills exactly what the cap leaves; everything completes."""
    s = Scheduler(SchedulerConfig(max_running={"a": cap} if by_type else {}), 0)
    s.handle(WorkerJoined("w1", 8, TYPES[2], uid="u1"), 0.0)
    s.handle(WorkerJoined("w2", 8, TYPES[2]), 0.0)
    s.handle(
        TaskReady(
            "r", "a", 0, range(6), attempts_made=dict.fromkeys(held, 1),
            held=dict.fromkeys(held, "u1"), max_parallel=None if by_type else cap,
        ),
        0.0,
    )
    unclaimed = set(held)

    def occupying() -> int:
        return len(s.held_by("w1")) + len(s.held_by("w2")) + len(unclaimed)

    def dispatch_round() -> None:
        before = occupying()
        ready = sum(s.queue_depth().values())
        assert len(s.dispatch(0.0)) == min(ready, max(0, cap - before))
        assert occupying() <= max(cap, len(held))

    dispatch_round()
    for index in claims:
        mine = ("r", index, 1) in s.held_by("w1")
        assert s.adopt("w1", "r", index, 1) == (mine or index in unclaimed)
        unclaimed.discard(index)
        dispatch_round()
    if release:
        s.handle(ReleaseHeld("r"), 0.0)
        unclaimed.clear()
        dispatch_round()
    for _ in range(20):
        running = s.held_by("w1") + s.held_by("w2")
        for t, i, a in running:
            s.handle(AttemptSucceeded(t, i, a), 0.0)
        if not running and not unclaimed:
            break
        if not running:
            s.handle(ReleaseHeld("r"), 0.0)
            unclaimed.clear()
        dispatch_round()
    assert not s.knows_task("r")  # completed and forgotten: no deadlock


def test_a_task_at_its_cap_lets_the_task_behind_it_run_and_says_why_it_waits() -> None:
    s = Scheduler(SchedulerConfig(max_running={"b": 1}), 0)
    s.handle(WorkerJoined("w1", 4, TYPES[2]), 0.0)
    s.handle(TaskReady("p", "a", 5, range(3), max_parallel=1), 0.0)
    s.handle(TaskReady("q", "b", 5, range(3)), 0.0)
    s.handle(TaskReady("u", "a", 0, range(3)), 0.0)
    s.handle(TaskReady("g", "a", 0, range(1), labels=frozenset({"gpu"})), 0.0)
    sent = Counter(d.task_id for d in s.dispatch(0.0))
    # p and q reach their caps; u, of a lower priority, takes the other slots
    assert sent == {"p": 1, "q": 1, "u": 2}
    assert s.waiting_for("p") == "held by max_parallel (1)"
    assert s.waiting_for("q") == "held by max_running of type b (1)"
    assert s.waiting_for("u") is None  # only load holds it
    assert s.waiting_for("g") == "no connected worker has the labels gpu"
    assert s.held_by_caps() == {("a", "max_parallel"): 2, ("b", "max_running"): 2}
    s.handle(WorkerJoined("w2", 1, TYPES[2], frozenset({"gpu", "ssd"})), 0.0)
    assert s.waiting_for("g") is None
    assert [d.task_id for d in s.dispatch(0.0)] == ["g"]


def test_the_harness_reaches_the_rare_paths() -> None:
    """The properties above are not vacuous: a fixed run loses an attempt, speculates, and
    fails a task."""
    steps = [
        ("join", 1, 2),  # w1, 2 slots
        ("submit", 3, 16),  # t0: 2 subtasks, no retries, speculative
        ("dispatch", 1, 0),
        ("leave", 0, 0),  # both attempts lost
        ("join", 0, 2),  # w2, 1 slot
        ("join", 0, 2),  # w3, 1 slot
        ("dispatch", 1, 0),  # t0/0 -> w2, t0/1 -> w3
        ("succeed", 1, 0),  # t0/1 done
        ("tick", 9, 0),
        ("speculate", 0, 0),  # t0/0 has run 0.45 s > 0: a second attempt on w3
        ("fail", 0, 0),  # the first attempt fails; the speculative one still runs
        ("succeed", 0, 0),
        ("submit", 0, 0),  # t1: 1 subtask
        ("dispatch", 1, 0),
        ("fail", 0, 0),  # no retries: FailTask, and the harness ends t1
    ]
    h = run(Harness(0, 0, homogeneous=True, max_retries=0), steps)
    assert [att for att, _ in h.lost] == [("t0", 0, 1), ("t0", 1, 1)]
    assert h.speculated == 1
    assert h.tasks["t0"].completes == 1
    assert h.subs["t0", 0].successes[0][0] == 3
    assert h.tasks["t1"].ended and h.subs["t1", 0].state == "failed"


def test_a_worker_that_hands_back_work_gets_no_prefetch_until_an_attempt_ends() -> None:
    """The model follows a hand-back of work that waited behind attempts that overran."""
    steps = [
        ("join", 0, 2),  # w1, 1 slot
        ("submit", 9, 0),  # t0: 4 subtasks
        ("dispatch", 1, 0),  # w1 takes 3: its slot and a prefetch of 2
        ("handback", 2, 1),  # the last of them waited behind the others: handed back
        ("dispatch", 1, 0),  # nothing: w1 gets only its slot, which is taken
        ("succeed", 0, 0),  # one of w1's attempts ends
        ("dispatch", 1, 0),  # its prefetch again
    ]
    h = Harness(2, 0, homogeneous=True, max_retries=0)
    for name, a, b in steps[:5]:
        OPS[name](h, a, b)
        h.check_invariants()
    assert h.workers["w1"].stuck and len(h.workers["w1"].held) == 2
    run(h, steps[5:])
    assert not h.workers["w1"].stuck
    assert h.tasks["t0"].completes == 1

