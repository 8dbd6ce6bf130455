"""Schedules: tasks submitted at the times of a cron expression or every so often, each firing
exactly once.

One loop waits for the earliest next firing of all schedules (a heap), then submits its task
through the one submission path (`Submissions.submit_many`), the task naming the schedule and
the firing's time. The store keeps one task per (schedule, firing time), so a firing made
twice (a master restarted mid-way, a second master) is refused by the store and made once.
Only a master that serves runs this loop: a standby has no `Master`. Firings missed while no
master ran are caught up by one run, the latest (`Timetable.due`); the next is counted from
that firing's time, not from when the loop woke. `overlap: skip` lets a firing go while the
schedule's previous task is unfinished, and counts it.

Imports the master's `records`, `submissions`, `tasks` and `rejected`, `model`,
`scheduling.timetable` and `protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from dataclasses import dataclass, replace

from herder.master.records import Records
from herder.master.rejected import Rejected
from herder.master.submissions import Submission, Submissions
from herder.master.tasks import Tasks
from herder.model import ScheduleRecord
from herder.protocol.answers import ScheduleView
from herder.protocol.api import ScheduleRequest
from herder.scheduling.timetable import BadTimetable, Timetable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Planned:
    """A schedule as the loop holds it: its record (kept as stored), its timetable, and its
    next firing."""

    record: ScheduleRecord
    timetable: Timetable
    next_run_at: float


class Schedules:
    def __init__(self, records: Records, submissions: Submissions, tasks: Tasks) -> None:
        self._records = records
        self._submissions = submissions
        self._tasks = tasks
        self._planned: dict[str, Planned] = {}
        #: (next_run_at, schedule id); an entry whose schedule has another time now, or is
        #: gone, is dropped when it comes up
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()

    async def load(self) -> None:
        """Take up the stored schedules (at start)."""
        for record in await self._records.schedules.all():
            try:
                self._plan(record)
            except BadTimetable as exc:  # stored by a herder that read it otherwise
                log.error("schedule %s is not run: %s", record.id, exc)

    # -- what the API asks ---------------------------------------------------------------

    async def add(self, request: ScheduleRequest) -> ScheduleView:
        """Check and store a new schedule; Rejected(422) naming the field that is wrong,
        Rejected(409) when the id is taken."""
        now = time.time()
        try:
            timetable = Timetable.parse(request.cron, request.every, request.timezone, now)
        except BadTimetable as exc:
            raise Rejected(422, str(exc)) from None
        # the checks of a submission of the same task: its type, its params
        self._submissions.validate(Submission(type=request.type, params=request.params))
        record = ScheduleRecord(
            id=request.id, type=request.type, params=request.params, cron=timetable.cron,
            every=request.every, timezone=request.timezone, priority=request.priority,
            timeout=request.timeout, overlap=request.overlap, created_at=now,
        )
        if not await self._records.schedules.insert(record):
            raise Rejected(409, f"id: schedule {request.id!r} already exists")
        if request.id in self._planned:  # (deleted and made again while its firing ran)
            del self._planned[request.id]
        return self._view(self._plan(record, timetable))

    async def remove(self, schedule_id: str) -> None:
        """Delete a schedule (the tasks it fired stay); Rejected(404) if there is none."""
        if not await self._records.schedules.delete(schedule_id):
            raise Rejected(404, f"schedule {schedule_id!r} not found")
        self._planned.pop(schedule_id, None)

    def views(self) -> list[ScheduleView]:
        return [self._view(p) for _, p in sorted(self._planned.items())]

    def view(self, schedule_id: str) -> ScheduleView:
        planned = self._planned.get(schedule_id)
        if planned is None:
            raise Rejected(404, f"schedule {schedule_id!r} not found")
        return self._view(planned)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Fire each schedule at its times, until cancelled."""
        while True:
            self._changed.clear()
            delay = self._heap[0][0] - time.time() if self._heap else None
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), delay)
            await self._fire_due(time.time())

    async def _fire_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            at, schedule_id = heapq.heappop(self._heap)
            planned = self._planned.get(schedule_id)
            if planned is None or planned.next_run_at != at:
                continue
            try:
                await self._fire(planned, now)
            except Exception:
                log.exception("schedule %s: its firing failed", schedule_id)
            if self._planned.get(schedule_id) is planned:
                last = planned.record.last_target_at
                self._push(planned, planned.timetable.next_after(last if last is not None else at))

    async def _fire(self, planned: Planned, now: float) -> None:
        """Make the firing due (the latest one, whatever was missed before it), or let it go."""
        record = planned.record
        target = planned.timetable.due(record.last_target_at, now)
        if target is None:
            return
        running = record.last_task_id is not None and record.last_task_id in self._tasks.active
        if record.overlap == "skip" and running:
            if await self._records.schedules.skip_firing(record.id, target):
                record.skipped += 1
            record.last_target_at = target
            return
        (answer,) = await self._submissions.submit_many([Submission(
            type=record.type, params=record.params, priority=record.priority,
            timeout=record.timeout, schedule=record.id, fired_at=target,
        )])
        if isinstance(answer, Rejected):
            if answer.status == 409:  # made already (the store refused it twice): see how far
                stored = await self._records.schedules.get(record.id)
                if stored is not None:
                    planned.record = stored
                    return
            else:
                log.warning("schedule %s: its firing at %.3f is not made: %s",
                            record.id, target, answer.message)
            record.last_target_at = target
            return
        record.last_target_at = target
        record.last_run_at = float(answer["created_at"])
        record.last_task_id = str(answer["id"])

    def _plan(self, record: ScheduleRecord, timetable: Timetable | None = None) -> Planned:
        if timetable is None:
            timetable = Timetable.parse(
                record.cron, record.every, record.timezone, record.created_at
            )
        last = record.last_target_at
        planned = Planned(replace(record), timetable, 0.0)
        self._planned[record.id] = planned
        self._push(planned, timetable.next_after(record.created_at if last is None else last))
        return planned

    def _push(self, planned: Planned, at: float) -> None:
        planned.next_run_at = at
        heapq.heappush(self._heap, (at, planned.record.id))
        self._changed.set()

    @staticmethod
    def _view(planned: Planned) -> ScheduleView:
        r = planned.record
        return {
            "id": r.id, "type": r.type, "params": r.params, "cron": r.cron, "every": r.every,
            "timezone": r.timezone, "priority": r.priority, "timeout": r.timeout,
            "overlap": "skip" if r.overlap == "skip" else "allow", "created_at": r.created_at,
            "next_run_at": planned.next_run_at, "last_run_at": r.last_run_at,
            "last_task_id": r.last_task_id, "skipped": r.skipped,
        }
