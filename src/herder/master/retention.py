"""Retention: finished tasks deleted with everything they own, when they are older than
--keep-finished (by when they finished), or at once when a client asks.

The prune deletes the oldest first, BATCH tasks per transaction, and gives the event loop back
between two batches (BATCH_PAUSE), so that dispatch and the API never wait for more than one
short batch, whatever there is to delete (on SQLite the store runs on the event loop itself).
After each batch the store gives some of the freed space back (`Store.reclaim_space`). Only the
active master prunes: a standby runs no `Master`. A deleted task leaves the master's memory too
(the last progress kept of finished tasks); everything else a task holds in memory is let go
when it finishes. Imports `model` and the master's `records`, `tasks` and `rejected`.
"""

from __future__ import annotations

import asyncio
import logging
import time

from herder.master.records import Records
from herder.master.rejected import Rejected
from herder.master.tasks import Tasks

log = logging.getLogger(__name__)

#: tasks deleted per transaction
BATCH = 200
#: seconds between two full batches, for the rest of the master to go on
BATCH_PAUSE = 0.05
#: the longest wait between two looks for tasks to delete; a short --keep-finished looks more
#: often (a tenth of it, at least every LOOK_EVERY_MIN seconds)
LOOK_EVERY_MAX = 60.0
LOOK_EVERY_MIN = 0.5


class Retention:
    def __init__(self, keep_finished: float, records: Records, tasks: Tasks) -> None:
        """`keep_finished`: seconds a finished task is kept; 0 keeps every task."""
        self._keep = keep_finished
        self._records = records
        self._tasks = tasks
        #: tasks deleted by the prune since the start (for the logs and the tests' figures)
        self.pruned = 0

    @property
    def look_every(self) -> float:
        return min(LOOK_EVERY_MAX, max(LOOK_EVERY_MIN, self._keep / 10))

    async def prune(self) -> None:
        """Delete the finished tasks older than --keep-finished, a batch at a time, forever."""
        if self._keep <= 0:
            return
        while True:
            try:
                deleted = await self.prune_batch(time.time() - self._keep)
            except Exception:  # the store failed this time: the next look tries again
                log.exception("retention: a batch of finished tasks could not be deleted")
                deleted = 0
            await asyncio.sleep(BATCH_PAUSE if deleted >= BATCH else self.look_every)

    async def prune_batch(self, cutoff: float) -> int:
        """Delete at most BATCH finished tasks that finished before `cutoff`; how many."""
        deleted = await self._records.prune_finished(cutoff, BATCH)
        self._tasks.forget_finished(deleted)
        self.pruned += len(deleted)
        if deleted:
            log.debug("retention: deleted %d finished tasks", len(deleted))
        return len(deleted)

    async def delete(self, task_id: str) -> None:
        """Delete a finished task now. Rejected(409) for a task that has not finished,
        Rejected(404) for an unknown one."""
        task = self._tasks.active.get(task_id)
        if task is None:
            deleted = await self._records.delete_finished([task_id])
            if deleted:
                self._tasks.forget_finished(deleted)
                return
            record = await self._records.task(task_id)
            if record is None:
                raise Rejected(404, f"task {task_id!r} not found")
            state = record.state.value
        else:
            state = task.record.state.value
        raise Rejected(409, f"task {task_id!r} is {state}: only a finished task can be deleted "
                            "(cancel it first)")
