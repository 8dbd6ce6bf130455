"""The workers' book: who is connected, what each holds, its credit, and its health; and the
`Picker` that orders the workers for one round of dispatch.

Credit: a worker holds at most `slots + prefetch` attempts, plus, while everything it holds is
of short types, `slots * depth` pipelined ones (`runtimes`). Health: a worker that fails most of
what it runs while the others succeed is passed over while anyone else can take the work.
Imports only the stdlib, `scheduling.events`, `scheduling.runtimes` and `scheduling.tasks`.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from herder.scheduling.events import (
    WorkerCapacity,
    WorkerDisconnected,
    WorkerDraining,
    WorkerJoined,
    WorkerReconnected,
)
from herder.scheduling.runtimes import Runtimes
from herder.scheduling.tasks import AttemptKey, Subtask, Task

HEALTH_WINDOW = 10
#: a worker is deprioritised when at least this share of its last HEALTH_WINDOW attempts failed
#: (and at least HEALTH_MIN of them) while the other workers' attempts mostly succeed
HEALTH_FAILING = 0.8
HEALTH_MIN = 5


@dataclass(slots=True, eq=False)
class Worker:
    id: str
    slots: int
    types: frozenset[str]
    labels: frozenset[str]
    order: int
    draining: bool = False
    connected: bool = True
    unavailable: int = 0
    held: set[AttemptKey] = field(default_factory=set)
    #: the held attempts of types that were not short when dispatched: while there are any,
    #: nothing waits behind them (no pipelining)
    long: set[AttemptKey] = field(default_factory=set)
    #: outcomes of its last attempts (True: succeeded), to spot a worker that fails everything
    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=HEALTH_WINDOW))
    #: it handed back attempts that waited behind ones that overran: until one of those it still
    #: holds ends, it gets no more than its slots (no pipelining, no prefetch)
    stuck: bool = False
    #: see WorkerJoined.uid
    uid: str | None = None


class Workers:
    """Every worker the core knows, by id."""

    def __init__(self, prefetch: int, runtimes: Runtimes) -> None:
        self._prefetch = prefetch
        self.runtimes = runtimes
        self._by_id: dict[str, Worker] = {}
        self._joined = 0

    def __contains__(self, worker_id: str) -> bool:
        return worker_id in self._by_id

    def __iter__(self) -> Iterator[Worker]:
        return iter(self._by_id.values())

    def get(self, worker_id: str) -> Worker | None:
        return self._by_id.get(worker_id)

    # -- membership ----------------------------------------------------------------------------

    def join(self, ev: WorkerJoined) -> None:
        self._joined += 1
        self._by_id[ev.worker_id] = Worker(
            ev.worker_id, max(1, ev.slots), ev.types, ev.labels, self._joined, uid=ev.uid
        )

    def leave(self, worker_id: str) -> Worker | None:
        """Forget the worker; what it held is the caller's to requeue."""
        return self._by_id.pop(worker_id, None)

    def change(
        self, ev: WorkerDraining | WorkerDisconnected | WorkerReconnected | WorkerCapacity
    ) -> None:
        w = self._by_id.get(ev.worker_id)
        if w is None:
            return
        if isinstance(ev, WorkerDraining):
            w.draining = True
        elif isinstance(ev, WorkerCapacity):
            w.unavailable = max(0, ev.unavailable)
        else:
            w.connected = isinstance(ev, WorkerReconnected)

    # -- what each holds -----------------------------------------------------------------------

    def hold(self, w: Worker, task: Task, index: int, attempt: int) -> None:
        key = (task.id, index, attempt)
        w.held.add(key)
        if not self.runtimes.is_short(task.type):
            w.long.add(key)

    def release(
        self, worker_id: str, task_id: str, index: int, attempt: int, handed_back: bool = False
    ) -> None:
        w = self._by_id.get(worker_id)
        if w is not None:
            w.held.discard((task_id, index, attempt))
            w.long.discard((task_id, index, attempt))
            if not handed_back:
                w.stuck = False  # one of them ended: a slot is free again

    def mark_stuck(self, worker_id: str) -> Worker | None:
        """The worker handed back attempts that waited behind ones that overran: no more than
        its slots until one of those it holds ends. The worker, when this is news."""
        w = self._by_id.get(worker_id)
        if w is None or w.draining or w.stuck:
            return None  # (stuck: an earlier attempt of the same hand-back told it already)
        w.stuck = True
        return w

    def load(self, worker_id: str) -> tuple[int, int]:
        """(attempts held, slots)."""
        w = self._by_id[worker_id]
        return len(w.held), w.slots

    def held_by(self, worker_id: str) -> list[AttemptKey]:
        w = self._by_id.get(worker_id)
        return sorted(w.held) if w else []

    # -- credit and health ---------------------------------------------------------------------

    def credit(self, w: Worker, depth: int = 0) -> int:
        """Attempts `w` can take now; with `depth`, for an attempt of a short type pipelined
        that deep (see Runtimes.depth)."""
        if w.draining or not w.connected:
            return 0
        if w.stuck:  # see mark_stuck
            return w.slots - len(w.held) - w.unavailable
        credit = w.slots + self._prefetch - len(w.held) - w.unavailable
        if depth and not w.long:
            credit += w.slots * depth
        return credit

    def any_credit(self) -> bool:
        """Has any worker credit left within its slots and prefetch (pipelining aside)?"""
        return any(self.credit(w) > 0 for w in self._by_id.values())

    def record(self, worker_id: str, ok: bool) -> None:
        """An attempt on this worker succeeded (`ok`) or failed."""
        w = self._by_id.get(worker_id)
        if w is not None:
            w.outcomes.append(ok)

    def health(self, worker_id: str) -> tuple[float | None, bool]:
        """(failure rate of its last attempts or None, deprioritised?)."""
        w = self._by_id.get(worker_id)
        if w is None or not w.outcomes:
            return None, False
        return w.outcomes.count(False) / len(w.outcomes), self.failing(w)

    def failing(self, w: Worker) -> bool:
        """Most of its recent attempts failed while the others' mostly succeeded: the worker,
        not the work, is the likely cause. It still gets work when nobody else can take it."""
        if len(w.outcomes) < HEALTH_MIN or w.outcomes.count(False) < HEALTH_FAILING * len(
            w.outcomes
        ):
            return False
        others = [ok for o in self._by_id.values() if o is not w for ok in o.outcomes]
        return bool(others) and others.count(True) > len(others) / 2

    def none_can_serve(self, task: Task) -> str | None:
        """Why no connected worker could ever take the task's subtasks (None: one could)."""
        serving = [w for w in self._by_id.values() if w.connected and not w.draining]
        if not any(task.type in w.types for w in serving):
            return f"no connected worker runs type {task.type}"
        if not any(task.type in w.types and task.labels <= w.labels for w in serving):
            return f"no connected worker has the labels {' '.join(sorted(task.labels))}"
        return None

    def picker(self, depth: int, exclude: str | None = None) -> Picker:
        """The workers with credit for work pipelined `depth` deep, best first, never
        `exclude`."""
        return Picker(self, depth, exclude)


Entry = tuple[int, float, int, Worker]


class Picker:
    """The workers with credit, best first, for one round of dispatch (during which no
    outcome changes a worker's health and only the workers picked change their load).

    Best is, in this order: not avoided by the subtask (it failed there), not failing,
    least loaded relative to its slots, earliest joined. A heap on (failing, load, order)
    gives each pick in O(log workers) when the workers can all take the task; the ones that
    cannot are set aside for that pick and put back after it.
    """

    def __init__(self, workers: Workers, depth: int, exclude: str | None = None) -> None:
        self._workers = workers
        #: the deepest pipelining asked for: every worker that could take anything
        self._depth = depth
        self._heap: list[Entry] = [
            self._entry(w) for w in workers if workers.credit(w, depth) > 0 and w.id != exclude
        ]
        heapq.heapify(self._heap)

    def _entry(self, w: Worker) -> Entry:
        failing = 1 if self._workers.failing(w) else 0
        return (failing, (len(w.held) + w.unavailable) / w.slots, w.order, w)

    def empty(self) -> bool:
        return not self._heap

    def pick(self, task: Task, sub: Subtask, depth: int | None = None) -> Worker | None:
        """The best worker for this subtask (pipelined as deep as its type allows, unless
        `depth` says otherwise), or None."""
        workers = self._workers
        if depth is None:
            depth = workers.runtimes.depth(task.type)
        aside: list[Entry] = []
        avoided: Entry | None = None
        found: Entry | None = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            w = entry[3]
            if (
                workers.credit(w, depth) <= 0
                or task.type not in w.types
                or not task.labels <= w.labels
            ):
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

    def taken(self, w: Worker) -> None:
        """`w` was given an attempt: back in line with its new load, if it has credit left."""
        if self._workers.credit(w, self._depth) > 0:
            heapq.heappush(self._heap, self._entry(w))
