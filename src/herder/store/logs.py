"""The journal's part of the store contract, reached as `store.logs`: log lines and the other
entries of a task's story (states, ...), each with a `seq` that orders them.

The part shares the store's connection: inside the caller's `store.transaction()` its writes
commit with the task writes made there. Every write commits before it returns, as the rest of
the contract's. Imports `model` only.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from herder.model import LogRecord


class Logs(abc.ABC):
    @abc.abstractmethod
    def append(self, records: Sequence[LogRecord]) -> list[LogRecord]:
        """Store records in order; sets each one's `seq` (increasing per task) and returns
        them."""

    @abc.abstractmethod
    def lines(self, task_id: str, since: int = 0, limit: int = 1000) -> list[LogRecord]:
        """Log lines (kind "log") with seq > since, in seq order."""

    @abc.abstractmethod
    def events(
        self, task_id: str | None, since: int = 0, limit: int = 1000
    ) -> list[LogRecord]:
        """Journal entries of every kind with seq > since (of one task, or of all), in order."""

    @abc.abstractmethod
    def count(self, task_id: str) -> int:
        """How many log lines of the task are stored."""

    @abc.abstractmethod
    def trim(self, task_id: str, keep: int) -> int:
        """Delete all but the newest `keep` log lines of the task, add the number deleted to the
        task's logs_dropped, and return it."""
