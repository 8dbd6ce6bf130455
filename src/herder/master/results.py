"""The workers' results: committed in batches, kept for the aggregates, told to the core, and
acknowledged once stored.

Group commit: results that arrive while a batch is being written wait, then go to the store
together, in one transaction, each carrying its attempt's start when that was not written yet.
After the commit the core hears of them; the tasks they completed end (and wake whoever waits),
the freed slots are filled at once, and only then do the acknowledgements go out, so that each
worker's new attempts and its acknowledgements leave in one message. A failed attempt is stored
and told to the core at once, which retries it or fails the task.

Imports the scheduling core, `jsontext`, `model`, `protocol.frames` and the master's `live`,
`records`, `dispatch`, `liveevents`, `sessions`, `stats` and `background`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from herder import jsontext
from herder import scheduling as sch
from herder.master.background import Background
from herder.master.dispatch import Dispatcher
from herder.master.live import ActiveTask, KeptResults
from herder.master.liveevents import LiveEvents
from herder.master.records import Records
from herder.master.sessions import WorkerSession
from herder.master.stats import Stats
from herder.model import TaskError
from herder.protocol import frames


class Results:
    def __init__(
        self,
        sched: sch.Scheduler,
        active: dict[str, ActiveTask],
        records: Records,
        dispatcher: Dispatcher,
        live: LiveEvents,
        kept: KeptResults,
        stats: Stats,
        fail: Callable[[str, TaskError], None],
        background: Background,
    ) -> None:
        """`fail(task_id, error)`: how a task ends when a subtask has failed for good."""
        self._sched = sched
        self._active = active
        self._records = records
        self._dispatcher = dispatcher
        self._live = live
        self._kept = kept
        self._stats = stats
        self._fail = fail
        self._background = background
        #: results waiting for the next commit, with their JSON texts
        self._waiting: list[tuple[WorkerSession, frames.ResultFrame, str]] = []
        self._committing = False

    def on_result(self, session: WorkerSession, frame: frames.ResultFrame) -> None:
        ref = (frame.task_id, frame.index, frame.attempt)
        if not self._sched.is_current(*ref):
            self._stats.stale_messages.inc()
            session.send(_ack(frame))
            return
        task = self._active.get(frame.task_id)
        outcome, error = frame.outcome, frame.error
        result_json = _json_text(frame.result) if outcome == "ok" else None
        if outcome == "ok" and result_json is None:
            outcome, error = "error", "the result is not JSON-serialisable"
        if task is not None:
            task.progress.running_fraction.pop(frame.index, None)
            task.messages.pop(frame.index, None)
        if outcome == "ok":
            if task is not None:
                task.progress.subtasks_running = max(0, task.progress.subtasks_running - 1)
            # Group commit: results wait here while the previous batch is being written, then
            # go to the store together, in one transaction.
            self._waiting.append((session, frame, result_json or "null"))
            if not self._committing:
                self._committing = True
                self._background.spawn(self._commit())
            return
        now = time.monotonic()
        if outcome in ("error", "timeout", "too_large"):
            retry = outcome != "too_large"
            decisions = self._sched.handle(sch.AttemptFailed(*ref, retry), now)
            if task is not None:
                self._attempt_failed(session, frame, task, error or f"subtask {outcome}", decisions)
        else:  # cancelled or released: no failure is counted
            handed_back = outcome == "released"
            decisions = self._sched.handle(sch.AttemptEnded(*ref, handed_back), now)
        if task is not None and not any(isinstance(d, sch.Requeue) for d in decisions):
            # (a requeued attempt stops counting as running where the requeue is carried out)
            task.progress.subtasks_running = max(0, task.progress.subtasks_running - 1)
        session.send(_ack(frame))
        self._dispatcher.decided(decisions)

    def _attempt_failed(
        self,
        session: WorkerSession,
        frame: frames.ResultFrame,
        task: ActiveTask,
        message: str,
        decisions: list[sch.Decision],
    ) -> None:
        err = TaskError(
            message=message,
            subtask=frame.index,
            worker=session.name,
            traceback=frame.traceback,
            attempt=frame.attempt,
        )
        final = any(isinstance(d, sch.FailTask) for d in decisions)
        if any(isinstance(d, (sch.FailTask, sch.RetryLater)) for d in decisions):
            self._records.record_failure(
                frame.task_id, frame.index, frame.attempt, err, final, time.time()
            )
        if final:
            task.progress.subtasks_failed += 1
            # once this frame's own decisions are carried out
            asyncio.get_running_loop().call_soon(self._fail, task.id, err)

    async def _commit(self) -> None:
        """Write the waiting results in one transaction, then acknowledge them; repeat while
        more arrived meanwhile."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                self._stats.results_per_commit.observe(len(batch))
                finished_at = time.time()
                take = self._records.take_start
                items = []
                for _, f, text in batch:
                    # the attempt's start, unless it is written already: the result's write
                    # carries it (one row write for both)
                    start = take(f.task_id, f.index, f.attempt)
                    worker, started_at, uid = start[3:] if start else (None, None, None)
                    items.append(
                        (f.task_id, f.index, f.attempt, text, finished_at, worker, started_at, uid)
                    )
                recorded = await self._records.record_results(items)
                now = time.monotonic()
                decisions: list[sch.Decision] = []
                acks: list[tuple[WorkerSession, frames.AckMap]] = []
                done = 0
                handle, active, keep = self._sched.handle, self._active, self._kept.keep
                observe_duration, moved = self._stats.observe_duration, self._live.moved
                for (session, frame, text), stored in zip(batch, recorded, strict=True):
                    task_id, index, attempt = frame.task_id, frame.index, frame.attempt
                    # The core decides whether this attempt completed its subtask; the store's
                    # guarded update made sure the subtask has exactly one result either way.
                    succeeded = sch.AttemptSucceeded(task_id, index, attempt, frame.duration)
                    outcome = handle(succeeded, now)
                    decisions += outcome
                    acks.append((session, frames.ack_map(task_id, index, attempt)))
                    task = active.get(task_id)
                    # (a Stale comes alone: the first decision tells)
                    if task is not None and not (outcome and isinstance(outcome[0], sch.Stale)):
                        if stored:
                            keep(task, index, frame.result, len(text))
                        task.progress.subtasks_done += 1
                        done += 1
                        observe_duration(task.record.type, frame.duration)
                        moved(task_id)  # its progress moved
                if done:
                    self._stats.subtask_finished(done)
                # The tasks these results completed end (and wake whoever waits for them) before
                # the acknowledgements go out: the workers need not hear of it first. The freed
                # slots are filled now, not at the next turn, so each worker's new attempts and
                # its acknowledgements leave in one message.
                self._dispatcher.carry_out(decisions)
                self._dispatcher.pump()
                for session, ack in acks:
                    session.send(ack)
        finally:
            self._committing = False


def _ack(frame: frames.ResultFrame) -> frames.AckMap:
    return frames.ack_map(frame.task_id, frame.index, frame.attempt)


def _json_text(value: Any) -> str | None:
    """The value as compact JSON text, or None when it is not JSON (e.g. bytes from msgpack)."""
    try:
        return jsontext.strict(value)
    except (TypeError, ValueError):
        return None
