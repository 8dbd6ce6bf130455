"""The master's shell around the scheduler core: it feeds the core what happened, carries out what
the core decides, and keeps the store and the workers in step.

Everything here runs on the event loop. The store is called through `StoreThread` (inline for
SQLite, on a thread for a store that waits on a network); task type code (`split`, `aggregate`)
runs inline once it is known to be quick, else on a small thread pool (`CodeRunner`). Around it:
submissions come in through `intake`, the workers' comings and goings are kept by `membership`,
and what the HTTP API reads beyond one task is in `reads`. Imports `scheduling`, `store`,
`protocol`, `tasktype`, `model` and the master's own `live`, `sessions`, `membership`, `journal`,
`starts`, `events` and `stats`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from herder import jsontext
from herder import scheduling as sch
from herder.config import MasterSettings
from herder.errors import HerderError
from herder.jsontext import JSONText
from herder.master.coderunner import CodeRunner
from herder.master.events import Event, Hub
from herder.master.journal import Journal
from herder.master.live import ActiveTask, active_view, stored_view
from herder.master.membership import Membership
from herder.master.sessions import WorkerSession
from herder.master.starts import UnwrittenStarts
from herder.master.stats import Gauges, Stats
from herder.master.storethread import StoreThread
from herder.model import JSON, LogRecord, Progress, TaskError, TaskRecord, TaskState
from herder.protocol import frames
from herder.store.base import Store
from herder.tasktype import Registry

log = logging.getLogger(__name__)

FINISHED_CACHE = 10_000
#: progress events go out at most this often per task
PROGRESS_INTERVAL = 0.1
#: how often running subtasks are checked for stragglers
SPECULATE_EVERY = 0.5
#: an aggregate of more results than this always runs on a thread, however quick it was before
INLINE_RESULTS = 1000
#: the state `aggregating` is stored only for an aggregate still running after this long
AGGREGATING_STORED_AFTER = 0.1


class Rejected(HerderError):
    """A request the master refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Submission:
    type: str
    params: dict[str, JSON]
    priority: int = 0
    timeout: float | None = None
    id: str | None = None
    retries: int | None = None


@dataclass(frozen=True, slots=True)
class EarlySplit:
    """A task's parts, split before its row was stored (`Master.split_now`), and their JSON
    texts, as stored."""

    parts: list[JSON]
    texts: list[JSONText]


class Master:
    def __init__(self, settings: MasterSettings, store: Store, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.store = StoreThread(store)
        self.sched = sch.Scheduler(
            sch.SchedulerConfig(
                prefetch=settings.prefetch,
                pipeline_below=settings.pipeline_below,
                retry_backoff=settings.retry_backoff,
                retry_backoff_max=settings.retry_backoff_max,
            ),
            seed=int(time.time()),
        )
        self.active: dict[str, ActiveTask] = {}
        self.members = Membership(
            settings, self.sched, frozenset(registry.names()), self._decided,
            adopted=self._attempt_adopted, lost_one=self._count_lost_worker,
        )
        self.sessions = self.members.sessions
        #: long polls waiting for a task to finish
        self._waiters: dict[str, list[asyncio.Future[dict[str, JSON] | None]]] = {}
        self._finished: OrderedDict[str, Progress] = OrderedDict()
        self._unfinished = 0
        self._code = CodeRunner(settings.split_timeout)
        self._pump_scheduled = False
        self._wakeup: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._results: list[tuple[WorkerSession, frames.ResultFrame, str]] = []
        #: bytes of result JSON held in ActiveTask.results
        self._result_bytes = 0
        self._committing = False
        #: attempt starts not written yet: most are written with their result
        self.starts = UnwrittenStarts(self.store)
        self._loops: list[asyncio.Task[None]] = []
        self.hub = Hub()
        self.journal = Journal(self.store, self.hub, settings.max_logs_per_task)
        #: tasks whose progress changed since the last progress events went out
        self._dirty: set[str] = set()
        self.stats = Stats(
            Gauges(
                queue_depth=self.sched.queue_depth,
                workers=lambda: len(self.sessions),
                slots=self._slots,
                tasks_by_state=self.tasks_by_state,
            )
        )

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover unfinished tasks from the store and start the lease watch."""
        unfinished = await self.store.call(self.store.store.unfinished_tasks)
        self._unfinished = len(unfinished)
        for record in unfinished:
            await self._recover(record)
        self._loops = [
            asyncio.create_task(self.members.watch_leases()),
            asyncio.create_task(self._publish_progress()),
        ]
        if self.settings.speculate_factor is not None or self.settings.speculate_after is not None:
            self._loops.append(asyncio.create_task(self._speculate()))

    async def stop(self) -> None:
        for loop_task in self._loops:
            loop_task.cancel()
        for session in list(self.sessions.values()):
            session.close("master shutting down")
        self.starts.post()
        await self.journal.flush()
        self._code.shutdown()
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    # -- submissions -----------------------------------------------------------------------

    def validate(self, sub: Submission) -> tuple[TaskRecord, Any]:
        """The task's record and its parsed params; Rejected(422) naming what is wrong."""
        try:
            task_type = self.registry.get(sub.type)
            params = task_type.parse_params(sub.params)
        except HerderError as exc:
            raise Rejected(422, str(exc)) from None
        task_id = sub.id if sub.id is not None else new_task_id()
        record = TaskRecord(
            id=task_id,
            type=sub.type,
            params=sub.params,
            priority=sub.priority,
            timeout=sub.timeout,
            created_at=time.time(),
            max_retries=sub.retries,
        )
        return record, params

    def reserve(self, count: int) -> None:
        """Count `count` more unfinished tasks, or raise Rejected(429) if they do not fit under
        --max-pending. Before any await, so that concurrent submissions see them."""
        if self._unfinished + count > self.settings.max_pending:
            raise Rejected(
                429,
                f"pending queue is full ({self._unfinished} of --max-pending "
                f"{self.settings.max_pending} tasks unfinished); retry later",
                retry_after=1.0,
            )
        self._unfinished += count

    def unreserve(self, count: int) -> None:
        """Give back what `reserve` counted for tasks that were not admitted after all."""
        self._unfinished -= count

    def admit(self, record: TaskRecord, params: Any) -> ActiveTask:
        """Make a reserved task, stored or being stored, active (pending); `start_split` next."""
        self.stats.task_submitted(record.type)
        self.journal.state(record.id, TaskState.PENDING, record.created_at)
        return self._activate(record, params)

    def _activate(self, record: TaskRecord, params: Any) -> ActiveTask:
        task = ActiveTask(record=record, params=params)
        if record.timeout is not None:
            task.deadline = record.created_at + record.timeout
            delay = max(0.0, task.deadline - time.time())
            task.deadline_handle = asyncio.get_running_loop().call_later(
                delay, self._on_deadline, record.id
            )
        self.active[record.id] = task
        return task

    def split_now(self, record: TaskRecord, params: Any) -> EarlySplit | TaskError | None:
        """Split a task about to be stored, when its type's split is known to be quick (it runs
        inline): the task is then stored running, its subtasks with it, in the commit of its
        row; the update that started the row afterwards is saved (~7 us of SQLite per task
        alone, more in the master; docs/decisions.md).
        None: its split runs after it is stored (`start_split`). The split's error, to fail
        the task with once it is stored."""
        kind = f"{record.type}.split"
        if not self._code.runs_inline(kind):
            return None
        split = self.registry.instance(record.type).split
        try:
            parts, texts = _checked_parts(self._code.call_inline(kind, split, params))
        except Exception as exc:
            return _code_error("split", exc)
        record.state = TaskState.RUNNING
        record.started_at = time.time()
        record.subtasks_total = len(parts)
        return EarlySplit(parts, texts)

    def take_up(self, task: ActiveTask, split: EarlySplit | TaskError | None) -> None:
        """After `admit`, given what `split_now` made of it: schedule the subtasks of a task
        split already, fail one whose split raised, or split it now (`start_split`)."""
        if isinstance(split, EarlySplit):
            self.journal.state(task.id, TaskState.RUNNING, task.record.started_at or time.time())
            self._begin(task, split.parts, list(range(len(split.parts))), {}, {})
        elif split is None:
            self.start_split(task)
        else:
            self.fail(task.id, split)

    def start_split(self, task: ActiveTask) -> None:
        """Split the task (its subtasks are dispatched at the next `pump`)."""
        split = self.registry.instance(task.record.type).split
        kind = f"{task.record.type}.split"
        self._run_code(task, "split", kind, split, (task.params,), self._split_done)

    def _split_done(self, task: ActiveTask, parts: Any) -> None:
        try:
            parts, texts = _checked_parts(parts)
        except Exception as exc:
            self.fail(task.id, _code_error("split", exc))
            return
        if task.id not in self.active:
            return  # cancelled or timed out while splitting
        self._begin(task, parts, list(range(len(parts))), {}, {}, stored_parts=texts)

    def _begin(
        self,
        task: ActiveTask,
        parts: list[JSON],
        todo: list[int],
        attempts: dict[int, int],
        failures: dict[int, int],
        held: frozenset[int] = frozenset(),
        stored_parts: Sequence[JSONText] | None = None,
    ) -> None:
        """Schedule the task's subtasks `todo`; a pending task starts running and its parts are
        stored (as `stored_parts`, their JSON texts, when the caller has them)."""
        record = task.record
        if record.state is TaskState.PENDING:
            record.started_at = time.time()
            start = (record.id, parts if stored_parts is None else stored_parts, record.started_at)
            self.store.post_item(self.store.store.start_tasks, start)
            record.state = TaskState.RUNNING
            self.journal.state(record.id, record.state, record.started_at)
        record.subtasks_total = len(parts)
        task.parts = parts
        task.progress.subtasks_total = len(parts)
        task.progress.subtasks_done = len(parts) - len(todo)
        if task.id not in self.active:
            return
        type_cls = self.registry.get(record.type)
        max_retries = record.max_retries if record.max_retries is not None else type_cls.max_retries
        decisions = self.sched.handle(
            sch.TaskReady(
                record.id,
                record.type,
                record.priority,
                todo,
                max_retries=max_retries,
                attempts_made=attempts,
                failures_made=failures,
                held=held,
                speculative=type_cls.speculative,
            ),
            time.monotonic(),
        )
        self._carry_out(decisions)
        self.kick()

    async def _recover(self, record: TaskRecord) -> None:
        """Take up a task that was not finished when the master stopped."""
        try:
            params = self.registry.get(record.type).parse_params(record.params)
        except HerderError as exc:
            task = self._activate(record, record.params)
            self.fail(task.id, TaskError(f"cannot resume: {exc}"))
            return
        task = self._activate(record, params)
        if record.state is TaskState.PENDING:
            self.start_split(task)
            return
        subtasks = await self.store.call(self.store.store.get_subtasks, record.id)
        task.results = None  # those from before the restart are in the store only
        parts = [s.part for s in subtasks]
        todo = [s.index for s in subtasks if s.state.value != "succeeded"]
        # An attempt's start is stored up to ~70 ms after its dispatch (master/starts.py): a
        # subtask stored as queued may have had one on its way. The next attempt gets a number
        # above it, so the two never pass for each other (the number is the fencing token); a
        # worker that reconnects still running that one may have it adopted.
        attempts = {s.index: s.attempts + (s.state.value == "queued") for s in subtasks}
        if record.state is TaskState.AGGREGATING or not todo:
            task.parts = parts
            task.progress.subtasks_total = task.progress.subtasks_done = len(parts)
            self._start_aggregate(task)
            return
        # What was running is held for --lease-timeout: its workers may reconnect and claim
        # it back (or deliver its result) instead of running it again.
        held = frozenset(s.index for s in subtasks if s.state.value == "running")
        self._begin(task, parts, todo, attempts, {}, held)
        if held:
            asyncio.get_running_loop().call_later(
                self.settings.lease_timeout, self._release_held, record.id
            )

    def _release_held(self, task_id: str) -> None:
        self._carry_out(self.sched.handle(sch.ReleaseHeld(task_id), time.monotonic()))
        self.kick()

    # -- cancel, deadline, failure -----------------------------------------------------------

    async def cancel(self, task_id: str) -> dict[str, JSON]:
        if task_id not in self.active:
            record = await self.store.call(self.store.store.get_task, task_id)
            if record is None:
                raise Rejected(404, f"task {task_id!r} not found")
            raise Rejected(409, f"task {task_id!r} is already {record.state.value}")
        self._end(task_id, TaskState.CANCELLED, None, None)
        view = await self.get(task_id)
        assert view is not None
        return view

    def _on_deadline(self, task_id: str) -> None:
        task = self.active.get(task_id)
        if task is None:
            return
        timeout = task.record.timeout
        error = TaskError(f"timed out: the task's deadline of {timeout} s passed")
        self._end(task_id, TaskState.TIMED_OUT, None, error)

    def fail(self, task_id: str, error: TaskError) -> None:
        self._end(task_id, TaskState.FAILED, None, error)

    def _end(
        self,
        task_id: str,
        state: TaskState,
        result: JSON,
        error: TaskError | None,
        stored_result: JSONText | None = None,
    ) -> None:
        """Finish a task exactly once: store it (`stored_result`: the result's JSON text, when
        the caller has it), then tell the core and the workers."""
        task = self.active.pop(task_id, None)
        if task is None:
            return
        if task.deadline_handle is not None:
            task.deadline_handle.cancel()
        if task.aggregating_handle is not None:
            task.aggregating_handle.cancel()
        self._forget_results(task)
        now = time.time()
        stored = result if stored_result is None else stored_result
        self.store.post_item(self.store.store.finish_tasks, (task_id, state, now, stored, error))
        task.record.state = state
        task.record.result = result
        task.record.error = error
        task.record.finished_at = now
        self._unfinished -= 1
        self.stats.task_finished(task.record.type, state)
        self.journal.forget(task_id)
        self._dirty.discard(task_id)
        if state is TaskState.SUCCEEDED:
            task.progress.subtasks_done = task.progress.subtasks_total
        task.progress.running_fraction.clear()
        task.progress.subtasks_running = 0
        self._finished[task_id] = task.progress
        if len(self._finished) > FINISHED_CACHE:
            self._finished.popitem(last=False)
        # The task's final JSON goes with the live event (when anyone listens) and to the long
        # polls waiting for it: a client waiting for thousands of tasks reads none of them
        # again, and a waiting call is answered without a read of the store.
        waiters = self._waiters.pop(task_id, ())
        view = self.stored_view(task.record) if waiters or self.hub.active else None
        self.journal.state(task_id, state, now, view)
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(view)
        if state is not TaskState.SUCCEEDED:
            reason = "timed out" if state is TaskState.TIMED_OUT else state.value
            self._carry_out(self.sched.handle(sch.TaskEnded(task_id, reason), 0.0))
        self.kick()

    # -- aggregation ---------------------------------------------------------------------------

    def _start_aggregate(self, task: ActiveTask) -> None:
        results = self._results_in_memory(task)
        if results is None and not self.store.inline:
            self._aggregating(task)
            self.spawn(self._read_results_then_aggregate(task))
            return
        if results is None:
            # results are committed before their subtasks count as done: no flush needed
            results = self.store.read_now(self.store.store.get_results, task.id)
        self._aggregate_results(task, results)

    async def _read_results_then_aggregate(self, task: ActiveTask) -> None:
        results = await self.store.read(self.store.store.get_results, task.id)
        # It may have ended while they were read (cancelled, timed out): then it is over, and
        # aggregating it would only send an `aggregating` state after its final one.
        if self.active.get(task.id) is task:
            self._aggregate_results(task, results)

    def _aggregate_results(self, task: ActiveTask, results: list[JSON]) -> None:
        aggregate = self.registry.instance(task.record.type).aggregate
        kind = f"{task.record.type}.aggregate"
        args = (task.params, results)
        # far more results than usual could make a quick aggregate slow: a thread
        inline = len(results) <= INLINE_RESULTS
        if inline and self._code.runs_inline(kind):
            # Known to be quick: it runs now and ends the task in this step, whose state goes
            # from running to the final one with no aggregating state in between, stored or
            # published (a journal row, an event and a timer less per task).
            self._call_now(task, "aggregate", kind, aggregate, args, self._aggregate_done)
            return
        self._aggregating(task)  # it takes a while: the task is aggregating meanwhile
        self._run_code(
            task, "aggregate", kind, aggregate, args, self._aggregate_done, inline=inline
        )

    def _results_in_memory(self, task: ActiveTask) -> list[JSON] | None:
        """The task's results in part order, when all of them were kept in memory."""
        kept = task.results
        if kept is None or len(kept) != len(task.parts):
            return None
        return [kept[i] for i in range(len(task.parts))]

    def _aggregate_done(self, task: ActiveTask, result: Any) -> None:
        try:
            text = JSONText(jsontext.strict(result))
        except Exception as exc:
            self.fail(task.id, _code_error("aggregate", exc))
            return
        self._end(task.id, TaskState.SUCCEEDED, result, None, stored_result=text)

    def _aggregating(self, task: ActiveTask) -> None:
        record = task.record
        if record.state is not TaskState.AGGREGATING:
            record.state = TaskState.AGGREGATING
            self.journal.state(record.id, record.state, time.time())
            # A quick aggregate's row goes from running to its final state in one write; a slow
            # one's is stored as aggregating after a while (for the list filter). Recovery
            # treats a running task whose subtasks all succeeded as aggregating either way.
            task.aggregating_handle = asyncio.get_running_loop().call_later(
                AGGREGATING_STORED_AFTER, self._store_aggregating, record.id
            )

    def _store_aggregating(self, task_id: str) -> None:
        task = self.active.get(task_id)
        if task is not None and task.record.state is TaskState.AGGREGATING:
            self.store.post_item(self.store.store.set_task_states, (task_id, task.record.state))

    # -- workers -------------------------------------------------------------------------------

    def _attempt_adopted(self, task_id: str) -> None:
        task = self.active.get(task_id)
        if task is not None:
            task.progress.subtasks_running += 1

    def _count_lost_worker(self) -> None:
        self.stats.lost_workers.inc()

    async def _speculate(self) -> None:
        """Start second attempts of stragglers while slots are idle."""
        cfg = self.settings
        while True:
            await asyncio.sleep(SPECULATE_EVERY)
            for d in self.sched.speculate(
                time.monotonic(), cfg.speculate_factor, cfg.speculate_after, cfg.speculate_min
            ):
                log.info("speculative attempt %d of %s[%d]", d.attempt, d.task_id, d.index)
                self._send_assign(d)

    async def on_frame(self, session: WorkerSession, frame: frames.WorkerFrame) -> None:
        session.last_seen = time.monotonic()
        match frame:
            case frames.Heartbeat():
                session.last_heartbeat = time.time()
                if frame.unavailable != session.unavailable:
                    session.unavailable = frame.unavailable
                    self.sched.handle(
                        sch.WorkerCapacity(session.id, frame.unavailable), time.monotonic()
                    )
                    self.kick()
            case frames.ProgressFrame():
                self._on_progress(frame)
            case frames.LogFrame():
                self._on_log(session, frame)
            case frames.ResultFrame():
                self._on_result(session, frame)
            case frames.Drain():
                session.draining = True
                self.sched.handle(sch.WorkerDraining(session.id), time.monotonic())
            case frames.Hello():
                raise HerderError("hello: sent twice on one connection")

    def _on_progress(self, frame: frames.ProgressFrame) -> None:
        task = self.active.get(frame.task_id)
        if task is None or not self.sched.is_current(frame.task_id, frame.index, frame.attempt):
            self.stats.stale_messages.inc()
            return
        fraction = frame.done / frame.total if frame.total else frame.done
        task.progress.running_fraction[frame.index] = min(1.0, max(0.0, fraction))
        if frame.message is not None:
            task.messages[frame.index] = frame.message
        self._progressed(task)

    def _progressed(self, task: ActiveTask) -> None:
        # Only marked here; the fraction is computed once per tick, not once per message.
        self._dirty.add(task.id)

    async def _publish_progress(self) -> None:
        """Every PROGRESS_INTERVAL: sample the ETA of the tasks that moved, and send their
        progress events to whoever follows (at most one per task per interval)."""
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            if not self._dirty:
                continue
            dirty, self._dirty = self._dirty, set()
            now = time.monotonic()
            for task_id in dirty:
                task = self.active.get(task_id)
                if task is None:
                    continue
                task.eta.observe(now, task.fraction())
                if self.hub.wants_updates:
                    self.hub.publish(Event("progress", task_id, self.progress_view(task)))

    def progress_view(self, task: ActiveTask) -> dict[str, JSON]:
        view = self.view(task)
        return {
            "task_id": task.id,
            "state": view["state"],
            "progress": view["progress"],
            "eta_seconds": view["eta_seconds"],
        }

    def _on_log(self, session: WorkerSession, frame: frames.LogFrame) -> None:
        if frame.task_id not in self.active:
            return
        self.journal.append(
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

    def _on_result(self, session: WorkerSession, frame: frames.ResultFrame) -> None:
        ref = (frame.task_id, frame.index, frame.attempt)
        if not self.sched.is_current(*ref):
            self.stats.stale_messages.inc()
            session.send(_ack(frame))
            return
        task = self.active.get(frame.task_id)
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
            self._results.append((session, frame, result_json or "null"))
            if not self._committing:
                self._committing = True
                self.spawn(self._commit_results())
            return
        now = time.monotonic()
        if outcome in ("error", "timeout"):
            decisions = self.sched.handle(sch.AttemptFailed(*ref), now)
            if task is not None:
                self._attempt_failed(session, frame, task, error or f"subtask {outcome}", decisions)
        else:  # cancelled or released: no failure is counted
            handed_back = outcome == "released"
            decisions = self.sched.handle(sch.AttemptEnded(*ref, handed_back), now)
        if task is not None and not any(isinstance(d, sch.Requeue) for d in decisions):
            # (a requeued attempt stops counting as running where the requeue is carried out)
            task.progress.subtasks_running = max(0, task.progress.subtasks_running - 1)
        session.send(_ack(frame))
        self._carry_out(decisions)
        self.kick()

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
            self.starts.post()  # the start it ends is written first
            self.store.post(
                self.store.store.record_failure,
                frame.task_id, frame.index, frame.attempt, err, final, time.time(),
            )
        if final:
            task.progress.subtasks_failed += 1
            # after this frame's own decisions are carried out, as before
            asyncio.get_running_loop().call_soon(self.fail, task.id, err)

    async def _commit_results(self) -> None:
        """Write the waiting results in one transaction, then acknowledge them; repeat while
        more arrived meanwhile."""
        try:
            while self._results:
                batch, self._results = self._results, []
                self.stats.results_per_commit.observe(len(batch))
                finished_at = time.time()
                take = self.starts.take
                items = []
                for _, f, text in batch:
                    # the attempt's start, unless it is written already: the result's write
                    # carries it (one row write for both)
                    start = take(f.task_id, f.index, f.attempt)
                    worker, started_at = (start[3], start[4]) if start else (None, None)
                    items.append(
                        (f.task_id, f.index, f.attempt, text, finished_at, worker, started_at)
                    )
                recorded = await self.store.commit(self.store.store.record_results, items)
                now = time.monotonic()
                decisions: list[sch.Decision] = []
                acks: list[tuple[WorkerSession, frames.AckMap]] = []
                done = 0
                for (session, frame, text), stored in zip(batch, recorded, strict=True):
                    task_id, index, attempt = frame.task_id, frame.index, frame.attempt
                    # The core decides whether this attempt completed its subtask; the store's
                    # guarded update made sure the subtask has exactly one result either way.
                    outcome = self.sched.handle(
                        sch.AttemptSucceeded(task_id, index, attempt, frame.duration), now
                    )
                    decisions += outcome
                    acks.append((session, frames.ack_map(task_id, index, attempt)))
                    task = self.active.get(task_id)
                    # (a Stale comes alone: the first decision tells)
                    if task is not None and not (outcome and isinstance(outcome[0], sch.Stale)):
                        if stored:
                            self._keep_result(task, index, frame.result, len(text))
                        task.progress.subtasks_done += 1
                        done += 1
                        self.stats.observe_duration(task.record.type, frame.duration)
                        self._dirty.add(task_id)  # its progress moved (see _progressed)
                if done:
                    self.stats.subtask_finished(done)
                # The tasks these results completed end (and wake whoever waits for them) before
                # the acknowledgements go out: the workers need not hear of it first. The freed
                # slots are filled now, not at the next turn, so each worker's new attempts and
                # its acknowledgements leave in one message.
                self._carry_out(decisions)
                self.pump()
                for session, ack in acks:
                    session.send(ack)
        finally:
            self._committing = False

    def _keep_result(self, task: ActiveTask, index: int, value: JSON, size: int) -> None:
        """Keep the result (as decoded from the frame: it passed as JSON) for the aggregate;
        `size` is its JSON text's, what --results-in-memory counts."""
        if task.results is None:
            return
        if self._result_bytes + size > self.settings.results_in_memory:
            self._forget_results(task)  # its aggregate reads them from the store
            return
        task.results[index] = value
        task.results_bytes += size
        self._result_bytes += size

    def _forget_results(self, task: ActiveTask) -> None:
        self._result_bytes -= task.results_bytes
        task.results, task.results_bytes = None, 0

    # -- carrying out decisions ----------------------------------------------------------------

    def kick(self) -> None:
        """Run the dispatcher soon, once, however many times it is kicked before then."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self.pump)

    def pump(self) -> None:
        """Dispatch what can be, now."""
        self._pump_scheduled = False
        for d in self.sched.dispatch(time.monotonic()):
            self._send_assign(d)
        self._arm_wakeup()

    def _arm_wakeup(self) -> None:
        at = self.sched.next_wakeup()
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if at is not None:
            delay = max(0.0, at - time.monotonic())
            self._wakeup = asyncio.get_running_loop().call_later(delay, self.kick)

    def _send_assign(self, d: sch.Dispatch) -> None:
        task = self.active.get(d.task_id)
        session = self.sessions.get(d.worker_id)
        if task is None or session is None:  # cannot happen: the core knows both
            log.error("dispatch to unknown task or worker: %s", d)
            return
        timeout = self.registry.get(task.record.type).subtask_timeout
        if task.deadline is not None:
            left = max(0.0, task.deadline - time.time())
            timeout = left if timeout is None else min(timeout, left)
        session.send(
            frames.assign_map(
                d.task_id, d.index, d.attempt, task.record.type, task.parts[d.index], timeout
            )
        )
        task.progress.subtasks_running += 1
        task.eta.started(time.monotonic())
        self.stats.dispatch_latency.observe(d.waited)
        self.starts.add((d.task_id, d.index, d.attempt, session.name, time.time()))

    def _decided(self, decisions: Sequence[sch.Decision]) -> None:
        """Carry out the core's decisions, then run the dispatcher soon."""
        self._carry_out(decisions)
        self.kick()

    def _carry_out(self, decisions: Sequence[sch.Decision]) -> None:
        for d in decisions:
            match d:
                # (cases are tried in order: the one of every task that completes first)
                case sch.CompleteTask():
                    task = self.active.get(d.task_id)
                    if task is not None:
                        self._start_aggregate(task)
                case sch.CancelAttempt():
                    session = self.sessions.get(d.worker_id)
                    if session is not None:
                        session.send(
                            frames.cancel_map(d.task_id, d.index, d.attempt, d.reason)
                        )
                case sch.Requeue():
                    self.starts.post()  # the start it undoes is written first
                    self.store.post(self.store.store.requeue_subtask, d.task_id, d.index)
                    task = self.active.get(d.task_id)
                    if task is not None:
                        task.progress.running_fraction.pop(d.index, None)
                        task.progress.subtasks_running = max(0, task.progress.subtasks_running - 1)
                case sch.RetryLater():
                    self.stats.retries.inc()
                case sch.Stale():
                    self.stats.stale_messages.inc()
                case sch.FailTask() | sch.Dispatch():
                    pass  # handled where they arise

    # -- reading ---------------------------------------------------------------------------

    def view(self, task: ActiveTask) -> dict[str, JSON]:
        return active_view(task)

    async def get(self, task_id: str) -> dict[str, JSON] | None:
        task = self.active.get(task_id)
        if task is not None:
            return self.view(task)
        record = await self.store.call(self.store.store.get_task, task_id)
        if record is None:
            return None
        return self.stored_view(record)

    def stored_view(self, record: TaskRecord) -> dict[str, JSON]:
        """A task that is not active, as stored (with its last progress if it ended here)."""
        return stored_view(record, self._finished.get(record.id))

    async def wait_finished(self, task_id: str, timeout: float) -> dict[str, JSON] | None:
        """Return when the task is finished (at once if it is not active), or after timeout:
        its final JSON if it finished meanwhile, else None (the caller reads it with `get`)."""
        if task_id not in self.active:
            return None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[dict[str, JSON] | None] = loop.create_future()
        self._waiters.setdefault(task_id, []).append(waiter)
        # a timer, not asyncio.wait_for: that wraps the wait in a task of its own, one more
        # turn of the loop between the task's end and the answer
        timer = loop.call_later(timeout, _set_none, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            waiters = self._waiters.get(task_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[task_id]

    def throughput(self) -> list[list[int]]:
        return self.stats.throughput()

    def _slots(self) -> tuple[int, int]:
        total = sum(s.slots for s in self.sessions.values())
        busy = sum(
            self.sched.worker_load(s.id)[0]
            for s in self.sessions.values()
            if self.sched.has_worker(s.id)
        )
        return total, busy

    def tasks_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for task in self.active.values():
            counts[task.record.state.value] = counts.get(task.record.state.value, 0) + 1
        return counts

    # -- plumbing ------------------------------------------------------------------------------

    def _run_code(
        self,
        task: ActiveTask,
        where: str,
        kind: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[ActiveTask, Any], None],
        inline: bool = True,
    ) -> None:
        """Run task-type code and hand its value to `done(task, value)`; an exception fails the
        task. At once when this kind of call is known to be quick (CodeRunner), else on a
        thread under --split-timeout, in a coroutine of its own."""
        if inline and self._code.runs_inline(kind):
            self._call_now(task, where, kind, fn, args, done)
        else:
            running = self._code.run(fn, *args, kind=kind, inline=inline)
            self.spawn(self._code_done(task, where, running, done))

    def _call_now(
        self,
        task: ActiveTask,
        where: str,
        kind: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Callable[[ActiveTask, Any], None],
    ) -> None:
        """`_run_code` for a kind the caller knows `runs_inline`: here and now."""
        try:
            value = self._code.call_inline(kind, fn, *args)
        except Exception as exc:
            self.fail(task.id, _code_error(where, exc))
            return
        done(task, value)

    async def _code_done(
        self,
        task: ActiveTask,
        where: str,
        running: Awaitable[Any],
        done: Callable[[ActiveTask, Any], None],
    ) -> None:
        try:
            value = await running
        except Exception as exc:
            self.fail(task.id, _code_error(where, exc))
            return
        done(task, value)

    def spawn(self, coro: Any) -> None:
        """Run `coro` in the background; its failure is logged."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background step failed", exc_info=task.exception())


def new_task_id() -> str:
    """32 hex digits like a UUID's, in creation order (the layout of UUIDv7: 48 bits of
    milliseconds, then 80 random bits). New rows land at the end of every index keyed by the
    task id, so a commit writes a few pages instead of one page per row scattered over the tree.

    The random bits make ids unique, not secret (anyone who can reach the API can list them):
    they come from a generator seeded once from the OS, not from a system call per id, which
    lets go of the GIL and, with another thread waiting for it, costs a switch of threads."""
    return f"{time.time_ns() // 1_000_000:012x}{_id_bits(80):020x}"


_id_random = random.Random(secrets.randbits(128))
_id_bits = _id_random.getrandbits
# a forked child must not make the ids its parent makes
os.register_at_fork(after_in_child=lambda: _id_random.seed(secrets.randbits(128)))


def _set_none(waiter: asyncio.Future[dict[str, JSON] | None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _checked_parts(value: Any) -> tuple[list[JSON], list[JSONText]]:
    """A split's parts and their JSON texts, encoded one by one as they are stored (checked
    and encoded once); raises what the encoder raises for a part that is not JSON."""
    parts = list(value)
    return parts, [JSONText(jsontext.strict(part)) for part in parts]


def _code_error(where: str, exc: BaseException) -> TaskError:
    tb = "".join(traceback.format_exception(exc))
    return TaskError(message=f"{where}: {type(exc).__name__}: {exc}", traceback=tb)


def _ack(frame: frames.ResultFrame) -> frames.AckMap:
    return frames.ack_map(frame.task_id, frame.index, frame.attempt)



def _json_text(value: Any) -> str | None:
    """The value as compact JSON text, or None when it is not JSON (e.g. bytes from msgpack)."""
    try:
        return jsontext.strict(value)
    except (TypeError, ValueError):
        return None
