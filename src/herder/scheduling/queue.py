"""The ready queue: which subtask runs next. Strict priority between tasks, round-robin between
tasks of equal priority (one ring of tasks per priority), FIFO inside a task (its `ready` deque).

It knows nothing of workers: `take` is given the function that finds a worker for a subtask.
Imports only the stdlib and `scheduling.tasks`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

from herder.scheduling.tasks import Subtask, Task

W = TypeVar("W")


class ReadyQueue:
    """The tasks that have ready subtasks, in the order they are served."""

    def __init__(self) -> None:
        # priority -> round-robin ring of the tasks that have ready subtasks
        self._rings: dict[int, deque[Task]] = {}
        self._priorities: list[int] = []  # keys of _rings, highest first
        #: how many tasks of each type are in a ring (have ready subtasks)
        self.ready_types: dict[str, int] = {}

    def empty(self) -> bool:
        return not self._rings

    def push(self, task: Task, index: int, front: bool, now: float) -> None:
        """Subtask `index` is ready (again): first of its task's (a retry, a requeue) or last."""
        if index in task.ready:
            return
        task.subtasks[index].ready_at = now
        if front:
            task.ready.appendleft(index)
        else:
            task.ready.append(index)
        if len(task.ready) == 1:
            self.add(task)

    def add(self, task: Task) -> None:
        """The task has ready subtasks: it takes its turn at the end of its priority's ring."""
        ring = self._rings.get(task.priority)
        if ring is None:
            ring = self._rings[task.priority] = deque()
            self._priorities = sorted(self._rings, reverse=True)
        if not task.in_ring:
            ring.append(task)
            task.in_ring = True
            self.ready_types[task.type] = self.ready_types.get(task.type, 0) + 1

    def remove(self, task: Task) -> None:
        """The task has no turn any more (it ended, or has nothing ready)."""
        ring = self._rings.get(task.priority)
        if ring is None or not task.in_ring:
            return
        ring.remove(task)
        task.in_ring = False
        self._not_ready(task.type)
        if not ring:
            del self._rings[task.priority]
            self._priorities = sorted(self._rings, reverse=True)

    def take(self, pick: Callable[[Task, Subtask], W | None]) -> tuple[Task, int, W] | None:
        """The first subtask in serving order that `pick` finds a worker for, taken off the
        queue: (its task, its index, the worker). Its task's next turn comes after every other
        task's of its priority."""
        for priority in self._priorities:
            ring = self._rings[priority]
            for position, task in enumerate(ring):
                index = task.ready[0]
                worker = pick(task, task.subtasks[index])
                if worker is None:
                    continue  # no worker can take this task's type now; the next task may
                task.ready.popleft()
                del ring[position]
                if task.ready:
                    ring.append(task)
                else:
                    task.in_ring = False
                    self._not_ready(task.type)
                    if not ring:
                        del self._rings[priority]
                        self._priorities = sorted(self._rings, reverse=True)
                return task, index, worker
        return None

    def tasks(self) -> Iterator[Task]:
        """Every task with ready subtasks, in no particular order."""
        for ring in self._rings.values():
            yield from ring

    def depth(self) -> dict[int, int]:
        """Ready subtasks per priority."""
        return {prio: sum(len(t.ready) for t in ring) for prio, ring in self._rings.items()}

    def _not_ready(self, type_name: str) -> None:
        left = self.ready_types[type_name] - 1
        if left:
            self.ready_types[type_name] = left
        else:
            del self.ready_types[type_name]
