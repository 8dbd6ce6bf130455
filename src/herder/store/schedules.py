"""The schedules' part of the store contract, reached as `store.schedules`.

A schedule is few rows written rarely: each call is its own transaction, or part of the
caller's `store.transaction()` (the part shares the store's connection). Every write commits
before it returns, as the rest of the contract's. Imports `model` only.
"""

from __future__ import annotations

import abc

from herder.model import ScheduleRecord


class Schedules(abc.ABC):
    @abc.abstractmethod
    def insert(self, schedule: ScheduleRecord) -> bool:
        """Store a new schedule; False (nothing changed) if its id is taken."""

    @abc.abstractmethod
    def all(self) -> list[ScheduleRecord]:
        """Every schedule, by id."""

    @abc.abstractmethod
    def get(self, schedule_id: str) -> ScheduleRecord | None:
        """The schedule of this id, or None."""

    @abc.abstractmethod
    def delete(self, schedule_id: str) -> bool:
        """False if there was no such schedule. The tasks it fired stay."""

    @abc.abstractmethod
    def skip_firing(self, schedule_id: str, fired_at: float) -> bool:
        """Count a firing let go (its previous task unfinished) and move the schedule's
        latest firing to it; False, changing nothing, if that firing or a later one was made or
        skipped already."""
