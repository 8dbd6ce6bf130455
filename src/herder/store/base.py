"""The store contract: every query the master makes, as one narrow synchronous interface.

Every write takes a batch, and so do the lookups by id (`get_tasks`); the single-item forms the
master uses (`get_task`, `record_failure`, `requeue_subtask`) are wrappers over them. The
schedules and the journal are contracts of their own (modules `store.schedules`, `store.logs`),
reached as the store's `schedules` and `logs` and sharing its connection and transactions.
`repository.Repository` writes the methods once for every backend over a driver; each backend
module (`sqlite`, `postgres`) adds its driver and what it does its own way. Methods are
synchronous; the master calls them on the event loop (a store that `runs_inline`) or from one
dedicated thread, never from two threads at once, so a backend needs no locking of its own
beyond what its driver does. Every method that changes state commits before it returns: the
master acknowledges nothing the store has not committed. Imports `model`, `store.schedules` and
`store.logs` only.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from herder.model import (
    JSON,
    SubtaskRecord,
    TaskError,
    TaskRecord,
    TaskState,
)
from herder.store.logs import Logs
from herder.store.schedules import Schedules

#: (task_id, index, attempt, worker, started_at, worker_uid): `worker_uid` says which worker
#: may claim the attempt back after a master restart (None: none may)
AttemptStart = tuple[str, int, int, str, float, str | None]
#: (task_id, index, attempt, result as JSON text, finished_at, worker, started_at, worker_uid):
#: the caller encodes the result, since it has to check that it is JSON anyway. `worker`,
#: `started_at` and `worker_uid` are the attempt's start when it was not written yet (else
#: `worker` is None, and what is stored stays).
AttemptResult = tuple[str, int, int, str, float, str | None, float | None, str | None]
#: (task_id, index, attempt, error, final, finished_at): final=True fails the subtask, else it
#: goes back to queued
AttemptFailure = tuple[str, int, int, TaskError, bool, float]
#: (task_id, index)
SubtaskKey = tuple[str, int]
#: (task_id, parts, started_at)
TaskStart = tuple[str, Sequence[JSON], float]
#: (task_id, final state, finished_at, result, error)
TaskFinish = tuple[str, TaskState, float, JSON, TaskError | None]



@dataclass(frozen=True, slots=True)
class Leader:
    """Who leads, as the store says: their term and advertised URL, and whether the lease is
    still running."""

    term: int
    url: str
    live: bool

class Store(abc.ABC):
    """The tasks and their subtasks; the schedules and the journal are parts of their own,
    `schedules` and `logs`, over the same connection (one `transaction()` holds them all)."""

    schedules: Schedules
    logs: Logs
    #: True when calls are local and fast enough to make on the event loop itself (SQLite);
    #: False when they wait on a network (PostgreSQL): then the master uses a thread.
    runs_inline: bool = False

    # -- life ------------------------------------------------------------------------------

    @abc.abstractmethod
    def migrate(self) -> None:
        """Create or upgrade the schema; idempotent."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def fence(self, term: int, on_deposed: Callable[[], None],
              idle_timeout: float | None = None) -> None:
        """Refuse every write from now on unless `term` is the current term of leadership
        (docs/failover.md); only a store that several masters may share has leadership."""
        raise TypeError(f"{type(self).__name__} has no leadership to fence writes with")

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[object]:
        """Group the calls made inside into one transaction, committed at the end (group
        commit); each method's own commit is then part of it."""

    # -- tasks -----------------------------------------------------------------------------

    @abc.abstractmethod
    def insert_tasks(
        self, tasks: Sequence[TaskRecord], parts: Sequence[Sequence[JSON] | None] = ()
    ) -> list[bool]:
        """Insert tasks in one transaction. Returns, per task, False if its id was already
        stored, or if it is a firing (`schedule`, `fired_at`) already made (that one is not
        inserted, the others are: one task per firing, enforced by the schema). A firing
        inserted moves its schedule's latest firing to it, in the same transaction.

        `parts`, when given, holds per task its parts or None: a task given its parts was split
        before it was stored (its record says running) and its subtasks are stored with it,
        queued, as `start_tasks` would store them."""

    @abc.abstractmethod
    def get_tasks(self, task_ids: Sequence[str]) -> list[TaskRecord]:
        """The tasks of these ids that exist, in no particular order."""

    def get_task(self, task_id: str) -> TaskRecord | None:
        """The task of this id, or None."""
        found = self.get_tasks([task_id])
        return found[0] if found else None

    @abc.abstractmethod
    def list_tasks(
        self,
        state: TaskState | None = None,
        type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        schedule: str | None = None,
    ) -> tuple[list[TaskRecord], str | None]:
        """Newest first; with `schedule`, only the tasks that schedule fired (and no other
        filter). Returns the page and the cursor of the next page (None at the end).
        Raises ValueError for a cursor that list_tasks did not hand out."""

    @abc.abstractmethod
    def count_unfinished(self) -> int:
        """Tasks in pending, running or aggregating: what --max-pending bounds."""

    @abc.abstractmethod
    def unfinished_tasks(self) -> list[TaskRecord]:
        """Tasks in pending, running or aggregating, oldest first (for recovery at start)."""

    @abc.abstractmethod
    def start_tasks(self, items: Sequence[TaskStart]) -> None:
        """For each task: store its subtasks (index = position in its parts, state queued), set
        subtasks_total, state running and started_at; in one transaction. A task that is not
        pending is left alone (one cancelled during its split stays so)."""

    @abc.abstractmethod
    def set_task_states(self, items: Sequence[tuple[str, TaskState]]) -> None:
        """Non-final transitions (running -> aggregating), in one transaction. A task whose
        current state cannot legally move to its new one (it was finished meanwhile, say) is
        left alone. Raises ValueError for a final state: use finish_tasks."""

    @abc.abstractmethod
    def finish_tasks(self, items: Sequence[TaskFinish]) -> list[bool]:
        """Move tasks to a final state with their result or error, in one transaction. Queued
        and running subtasks of a task that did not succeed become cancelled. Returns, per
        item, False when it changed nothing because its task was already final (so a task
        finishes exactly once). Of a task named twice, the first item finishes it.
        Raises ValueError for a state that is not final."""

    # -- retention -------------------------------------------------------------------------

    @abc.abstractmethod
    def delete_finished(self, task_ids: Sequence[str]) -> list[str]:
        """Delete those of these tasks that are finished, each with its subtasks (and their
        results) and its journal rows, in one transaction. Returns the ids deleted: an unknown
        or unfinished task is left alone and not among them."""

    @abc.abstractmethod
    def prune_finished(self, cutoff: float, limit: int) -> list[str]:
        """`delete_finished` for the oldest finished tasks (by finished_at) that finished before
        `cutoff`, at most `limit` of them, in one transaction. Returns the ids deleted."""

    @abc.abstractmethod
    def reclaim_space(self) -> None:
        """After deletes, outside a transaction: give some of the space they freed back (SQLite:
        an incremental vacuum of a bounded number of pages; PostgreSQL: nothing, its autovacuum
        makes the space of deleted rows reusable by itself)."""

    # -- subtasks --------------------------------------------------------------------------

    @abc.abstractmethod
    def start_attempts(self, items: Sequence[AttemptStart]) -> None:
        """Each subtask -> running with this attempt number and worker (its name and uid), in
        one transaction.
        A subtask that is already final is left alone; `attempts` never decreases."""

    @abc.abstractmethod
    def record_results(self, items: Sequence[AttemptResult]) -> list[bool]:
        """Each subtask -> succeeded with its result, in one transaction (group commit); one
        bool each. Exactly once: False, changing nothing, for a subtask that already has a
        result (enforced by the schema, not only by this check), an unknown one, or one that
        is failed or cancelled (its task is over: a late result must not make it look
        succeeded). Of a subtask named twice, the first item records its result."""

    @abc.abstractmethod
    def record_failures(self, items: Sequence[AttemptFailure]) -> None:
        """Attempts failed, in one transaction, in order. A final failure makes its subtask
        failed; any other sends it back to queued, keeping its error as the last one seen. A
        subtask that is already final is left alone: a failure of one attempt cannot undo the
        result of another."""

    def record_failure(
        self,
        task_id: str,
        index: int,
        attempt: int,
        error: TaskError,
        final: bool,
        finished_at: float,
    ) -> None:
        """`record_failures` for one attempt."""
        self.record_failures([(task_id, index, attempt, error, final, finished_at)])

    @abc.abstractmethod
    def requeue_subtasks(self, items: Sequence[SubtaskKey]) -> None:
        """Running subtasks go back to queued without counting a failure (worker lost, handed
        back on drain), in one transaction; the others are left alone."""

    def requeue_subtask(self, task_id: str, index: int) -> None:
        """`requeue_subtasks` for one subtask."""
        self.requeue_subtasks([(task_id, index)])

    @abc.abstractmethod
    def get_subtasks(
        self, task_id: str, after: int = -1, limit: int | None = None
    ) -> list[SubtaskRecord]:
        """In index order, those of an index above `after`: at most `limit` (None: all)."""

    @abc.abstractmethod
    def get_results(self, task_id: str) -> list[JSON]:
        """The results of a task's subtasks, in index order (None where there is none)."""


_PASSWORD_IN_URL = re.compile(r"(?<=://)([^/@:?#]*):[^/@?#]*@")
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact(url: str) -> str:
    """The store's URL as it may be shown (messages, logs): without a password, in its user
    part or as a parameter. (Better still, give it in PGPASSWORD or ~/.pgpass.)"""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1@", url))
