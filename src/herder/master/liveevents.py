"""What followers of tasks see live: the states tasks pass through, their progress, their logs.

Progress frames only mark a task as moved; every PROGRESS_INTERVAL the tasks that moved get one
progress event each (and an ETA sample), whatever number of frames came in between. Log lines
and final states go through the journal (stored, then published with their `seq`). The states
on a task's way (pending, running, aggregating) are live events only, like progress: they wait in
the journal's buffer to keep their order, with no id, and are not stored (a follower who
reconnects gets the task's snapshot, which holds its state; the task's row holds when it
started), which saves two of a short task's three journal rows; nobody following, they are not
even made.

Imports the scheduling core, `model`, `protocol.frames` and the master's `events`, `live`,
`records`, `sessions` and `stats`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from herder import scheduling as sch
from herder.master.events import Event, Hub
from herder.master.live import ActiveTask, progress_view
from herder.master.records import Records
from herder.master.sessions import WorkerSession
from herder.master.stats import Stats
from herder.model import FINAL_TASK_STATES, STATE_TEXT, LogRecord
from herder.protocol import frames

#: progress events go out at most this often per task
PROGRESS_INTERVAL = 0.1


class LiveEvents:
    def __init__(
        self,
        hub: Hub,
        records: Records,
        active: dict[str, ActiveTask],
        sched: sch.Scheduler,
        stats: Stats,
    ) -> None:
        self.hub = hub
        self._append = records.append_journal
        self._active = active
        self._sched = sched
        self._stats = stats
        #: tasks whose progress changed since the last progress events went out
        self._moved: set[str] = set()
        #: mark a task's progress as moved (bound once: it is called for every result)
        self.moved = self._moved.add
        #: a task that ended has no more progress to publish
        self.forget = self._moved.discard

    def state(
        self, task_id: str, state: str, ts: float, view: dict[str, Any] | None = None
    ) -> None:
        """A task's state: a final one is stored, and `view` (the finished task's JSON) goes
        with its live event, so that a client waiting for many tasks needs no request per task
        for their results; any other is a live event only."""
        state = STATE_TEXT[state]  # not the enum member: JSON encoders take a plain str faster
        if state not in FINAL_TASK_STATES:  # (a StrEnum's members match their strings)
            if self.hub.wants_updates:
                data = {"task_id": task_id, "state": state, "ts": ts}
                self._append(Event("state", task_id, data))
            return
        record = LogRecord(task_id=task_id, ts=ts, level="INFO", message=state, kind="state")
        self._append(record, view)

    def on_progress(self, frame: frames.ProgressFrame) -> None:
        task = self._active.get(frame.task_id)
        if task is None or not self._sched.is_current(frame.task_id, frame.index, frame.attempt):
            self._stats.stale_messages.inc()
            return
        fraction = frame.done / frame.total if frame.total else frame.done
        task.progress.running_fraction[frame.index] = min(1.0, max(0.0, fraction))
        if frame.message is not None:
            task.messages[frame.index] = frame.message
        # Only marked here; the fraction is computed once per tick, not once per message.
        self._moved.add(task.id)

    def on_log(self, session: WorkerSession, frame: frames.LogFrame) -> None:
        # a line of no current attempt cannot be told from one written into another's task
        if frame.task_id not in self._active or not self._sched.is_current(
            frame.task_id, frame.index, frame.attempt
        ):
            self._stats.stale_messages.inc()
            return
        self._append(
            LogRecord(
                task_id=frame.task_id,
                ts=frame.ts,
                level=frame.level,
                message=frame.message[: frames.MAX_LOG_MESSAGE],
                subtask=frame.index,
                attempt=frame.attempt,
                worker=session.name,
            )
        )

    async def publish_progress(self) -> None:
        """Every PROGRESS_INTERVAL: sample the ETA of the tasks that moved, and send their
        progress events to whoever follows (at most one per task per interval)."""
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            if not self._moved:
                continue
            moved = self._moved.copy()  # (the set stays: `moved` and `forget` are bound to it)
            self._moved.clear()
            now = time.monotonic()
            for task_id in moved:
                task = self._active.get(task_id)
                if task is None:
                    continue
                task.eta.observe(now, task.fraction())
                if self.hub.wants_updates:
                    self.hub.publish(Event("progress", task_id, progress_view(task)))

