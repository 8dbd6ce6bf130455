"""Submissions: each checked against its type, admitted under --max-pending, stored, split, and
its subtasks handed to the scheduling core.

`submit_many` commits the batch before it answers: an insert is what tells that a given id is
taken (409). `submit_and_wait` dispatches a task whose id the master makes before its row is
committed, and answers after that commit. A type's split known to be quick runs before the task
is stored, so that the task is stored running, its subtasks with it, in the commit of its row.
A task with a `not_before` ahead is stored `scheduled` and waits in `Delays`; when its time
comes it goes pending and on the same way as any other (`release`).

Imports the scheduling core, `errors`, `model`, `tasktype`, `jsontext` and the master's `live`,
`records`, `tasks`, `taskcode`, `dispatch`, `liveevents`, `background`, `rejected` and `ids`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from herder import jsontext
from herder import scheduling as sch
from herder.config import MasterSettings
from herder.errors import HerderError
from herder.jsontext import JSONText
from herder.master.background import Background
from herder.master.delays import Delays
from herder.master.dispatch import Dispatcher
from herder.master.ids import new_task_id
from herder.master.live import ActiveTask, active_view
from herder.master.liveevents import LiveEvents
from herder.master.records import Records
from herder.master.rejected import Rejected
from herder.master.taskcode import TaskCode, TooManySubtasks, checked_split, code_error
from herder.master.tasks import Tasks
from herder.model import JSON, TaskError, TaskRecord, TaskState
from herder.tasktype import Registry
from herder.values import value


@value
class Submission:
    type: str
    params: dict[str, JSON]
    priority: int = 0
    timeout: float | None = None
    id: str | None = None
    retries: int | None = None
    #: at most this many of its subtasks run at once
    max_parallel: int | None = None
    #: worker labels its subtasks need, beyond its type's
    labels: tuple[str, ...] = ()
    #: at least the size of the params' JSON text (the request body's length), when known:
    #: params are measured against --max-params only when it is over that
    params_bound: int | None = None
    #: seconds since the epoch before which the task does not start
    not_before: float | None = None
    #: the schedule that fires it and the firing's time (`master.schedules`)
    schedule: str | None = None
    fired_at: float | None = None


@value
class EarlySplit:
    """A task's parts, split before its row was stored (`split_now`), and their JSON texts, as
    stored."""

    parts: list[JSON]
    texts: list[JSONText]


class Submissions:
    def __init__(
        self,
        registry: Registry,
        sched: sch.Scheduler,
        records: Records,
        tasks: Tasks,
        code: TaskCode,
        dispatcher: Dispatcher,
        live: LiveEvents,
        background: Background,
        settings: MasterSettings,
    ) -> None:
        self._registry = registry
        self._max_params = settings.max_params
        self._max_subtasks = settings.max_subtasks_per_task
        self._sched = sched
        self._records = records
        self._tasks = tasks
        self._active = tasks.active
        self._code = code
        self._dispatcher = dispatcher
        self._live = live
        self._background = background
        self._delays = Delays(self.release)

    async def submit_many(self, subs: Sequence[Submission]) -> list[dict[str, JSON] | Rejected]:
        """Validate, admit and commit; each item is the task's JSON or why it was refused.

        Admission is all-or-nothing for the batch: if it does not fit under --max-pending (or
        --max-pending-subtasks) the whole call raises Rejected(429) and nothing is stored.
        """
        checked: list[tuple[TaskRecord, Any] | Rejected] = []
        for sub in subs:
            try:
                checked.append(self.validate(sub))
            except Rejected as exc:
                checked.append(exc)
        seen: set[str] = set()
        for i, c in enumerate(checked):
            if isinstance(c, Rejected):
                continue
            if c[0].id in seen or c[0].id in self._active:
                checked[i] = Rejected(409, f"id: task {c[0].id!r} already exists")
            seen.add(c[0].id)
        tasks = self._tasks
        valid, splits, early = self._admit(checked)
        try:
            inserted = await self._records.insert_tasks(
                [record for record, _ in valid],
                [s.texts if isinstance(s, EarlySplit) else None for s in splits],
            )
        except BaseException:
            tasks.unreserve(len(valid))
            raise
        finally:
            tasks.unreserve_subtasks(early)  # counted again as their tasks begin
        results: list[dict[str, JSON] | Rejected] = []
        ok = iter(zip(valid, splits, inserted, strict=True))
        for c in checked:
            if isinstance(c, Rejected):
                results.append(c)
                continue
            (record, params), split, was_inserted = next(ok)
            if not was_inserted:
                tasks.unreserve(1)
                results.append(Rejected(409, f"id: task {record.id!r} already exists"))
                continue
            task = tasks.admit(record, params)
            self.take_up(task, split)
            # as submitted: running with none dispatched yet, or pending while it splits
            results.append(active_view(task))
        # Dispatch now, not at the next turn of the loop: the workers get the new subtasks
        # before the answer to this submission is even encoded.
        self._dispatcher.pump()
        return results

    def _admit(
        self, checked: list[tuple[TaskRecord, Any] | Rejected]
    ) -> tuple[list[tuple[TaskRecord, Any]], list[EarlySplit | TaskError | None], int]:
        """Reserve room for the valid items and run their splits known to be quick: (the items
        still valid, what `split_now` made of each, the subtasks reserved for them). An item
        whose split makes too many subtasks becomes its Rejected(422) in `checked`."""
        tasks = self._tasks
        tasks.reserve(sum(not isinstance(c, Rejected) for c in checked))
        splits: list[EarlySplit | TaskError | None] = []
        for i, c in enumerate(checked):
            if isinstance(c, Rejected):
                continue
            try:
                splits.append(self.split_now(*c))
            except Rejected as exc:
                tasks.unreserve(1)
                checked[i] = exc
        valid = [c for c in checked if not isinstance(c, Rejected)]
        early = sum(len(s.parts) for s in splits if isinstance(s, EarlySplit))
        try:
            tasks.reserve_subtasks(early)
        except Rejected:
            tasks.unreserve(len(valid))
            raise
        return valid, splits, early

    async def submit_and_wait(self, sub: Submission, wait: float) -> dict[str, JSON]:
        """Submit one task and answer when it has finished, or after `wait` seconds with its
        JSON then. Raises Rejected.

        A task whose id the master makes cannot clash with a stored one, so it is dispatched
        before its row is committed: the row goes in the next transaction, usually the one that
        commits its result, and the answer waits for that commit. The promise is the same (no
        answer before the commit) with one commit fewer on the way of a call and its result.
        """
        tasks = self._tasks
        stored: asyncio.Future[list[bool]] | None = None
        # a given id may be taken: its insert says so, first; a delayed task is not dispatched
        if sub.id is not None or sub.not_before is not None:
            (answer,) = await self.submit_many([sub])
            if isinstance(answer, Rejected):
                raise answer
            task_id = str(answer["id"])
        else:
            record, params = self.validate(sub)
            tasks.reserve(1)
            try:
                split = self.split_now(record, params)
                tasks.reserve_subtasks(len(split.parts) if isinstance(split, EarlySplit) else 0)
            except Rejected:
                tasks.unreserve(1)
                raise
            if isinstance(split, EarlySplit):
                tasks.unreserve_subtasks(len(split.parts))  # counted again as it begins
            texts = split.texts if isinstance(split, EarlySplit) else None
            # a copy: the row is made later, and this record is the live one, soon finished
            stored = self._records.insert_tasks_later([replace(record)], [texts])
            # no answer made now: it comes at the end
            self.take_up(tasks.admit(record, params), split)
            self._dispatcher.pump()
            # While a worker runs it, commit the writes waiting (this task's row, the journal)
            # in one transaction: else they would go in the commit of its result, which the
            # answer waits for. Started after the dispatch, so its frames go out first.
            self._background.spawn(self._records.commit_waiting())
            task_id = record.id
        finished = await tasks.wait_finished(task_id, wait)
        if stored is not None:
            try:
                await stored
            except Exception as exc:
                tasks.fail(task_id, TaskError(message=f"the task could not be stored: {exc}"))
                raise
        task = finished or await tasks.get(task_id)
        if task is None:  # cannot happen: a task once stored stays
            raise Rejected(404, f"task {task_id!r} not found")
        return task

    def validate(self, sub: Submission) -> tuple[TaskRecord, Any]:
        """The task's record and its parsed params; Rejected(422) naming what is wrong."""
        try:
            task_type = self._registry.get(sub.type)
            params = task_type.parse_params(sub.params)
        except HerderError as exc:
            raise Rejected(422, str(exc)) from None
        bound = sub.params_bound
        if bound is None or bound > self._max_params:
            size = len(jsontext.strict(sub.params).encode())
            if size > self._max_params:
                raise Rejected(
                    413,
                    f"params: {size} bytes of JSON, over --max-params of {self._max_params} "
                    f"bytes (see docs/limits.md)",
                )
        task_id = sub.id if sub.id is not None else new_task_id()
        record = TaskRecord(
            id=task_id,
            type=sub.type,
            params=sub.params,
            priority=sub.priority,
            timeout=sub.timeout,
            created_at=time.time(),
            max_retries=sub.retries,
            not_before=sub.not_before,
            schedule=sub.schedule,
            fired_at=sub.fired_at,
            max_parallel=sub.max_parallel,
            labels=tuple(sorted(set(sub.labels))),
        )
        if sub.not_before is not None and sub.not_before > record.created_at:
            record.state = TaskState.SCHEDULED
        return record, params

    def split_now(self, record: TaskRecord, params: Any) -> EarlySplit | TaskError | None:
        """Split a task about to be stored, when its type's split is known to be quick (it runs
        inline): the task is then stored running, its subtasks with it, in the commit of its
        row, and the update that started the row afterwards is saved. None: its split runs
        after it is stored (`start_split`). The split's error, to fail the task with once it
        is stored. Rejected(422) for a split that makes too many subtasks."""
        kind = f"{record.type}.split"
        if record.state is TaskState.SCHEDULED or not self._code.runs_inline(kind):
            return None
        split = checked_split(self._registry.instance(record.type).split, self._max_subtasks)
        try:
            parts, texts = self._code.call_inline(kind, split, params)
        except TooManySubtasks as exc:
            raise Rejected(422, f"split: {exc}") from None
        except Exception as exc:
            return code_error("split", exc)
        record.state = TaskState.RUNNING
        record.started_at = time.time()
        record.subtasks_total = len(parts)
        return EarlySplit(parts, texts)

    def take_up(self, task: ActiveTask, split: EarlySplit | TaskError | None) -> None:
        """After `admit`, given what `split_now` made of it: schedule the subtasks of a task
        split already, fail one whose split raised, or split it now (`start_split`); a
        scheduled one waits for its time."""
        if task.record.state is TaskState.SCHEDULED:
            self.delay(task)
        elif isinstance(split, EarlySplit):
            self._live.state(task.id, TaskState.RUNNING, task.record.started_at or time.time())
            self.begin(task, split.parts, list(range(len(split.parts))), {}, {})
        elif split is None:
            self.start_split(task)
        else:
            self._tasks.fail(task.id, split)

    def delay(self, task: ActiveTask) -> None:
        """A scheduled task waits for its `not_before`, then is `release`d."""
        assert task.record.not_before is not None
        self._delays.add(task.id, task.record.not_before)

    def release(self, task_id: str) -> None:
        """A scheduled task's time has come: it goes pending, its deadline counts from now, and
        it is split and dispatched as any submission. A task cancelled meanwhile is gone."""
        task = self._active.get(task_id)
        if task is None or task.record.state is not TaskState.SCHEDULED:
            return
        now = time.time()
        task.record.state = TaskState.PENDING
        self._records.store_state(task_id, TaskState.PENDING)
        self._live.state(task_id, TaskState.PENDING, now)
        self._tasks.arm_deadline(task, now)
        self.start_split(task)
        self._dispatcher.pump()

    def close(self) -> None:
        """The master stops: no scheduled task is released any more."""
        self._delays.close()

    def start_split(self, task: ActiveTask) -> None:
        """Split the task (its subtasks are dispatched at the next pump)."""
        split = checked_split(self._registry.instance(task.record.type).split, self._max_subtasks)
        kind = f"{task.record.type}.split"
        self._code.run(task, "split", kind, split, (task.params,), self._split_done)

    def _split_done(self, task: ActiveTask, split: tuple[list[JSON], list[JSONText]]) -> None:
        parts, texts = split
        if task.id not in self._active:
            return  # cancelled or timed out while splitting
        problem = self._tasks.subtasks_problem(len(parts))
        if problem is not None:
            self._tasks.fail(task.id, TaskError(message=f"split: {problem}"))
            return
        self.begin(task, parts, list(range(len(parts))), {}, {}, stored_parts=texts)

    def begin(
        self,
        task: ActiveTask,
        parts: list[JSON],
        todo: list[int],
        attempts: dict[int, int],
        failures: dict[int, int],
        held: Mapping[int, str] | None = None,
        stored_parts: Sequence[JSONText] | None = None,
    ) -> None:
        """Schedule the task's subtasks `todo`; a pending task starts running and its parts are
        stored (as `stored_parts`, their JSON texts, when the caller has them). `held`: those
        that were running when the master stopped, by the (stored) uid of the worker that ran
        them."""
        record = task.record
        if record.state is TaskState.PENDING:
            record.started_at = time.time()
            self._records.start_task(
                record.id, parts if stored_parts is None else stored_parts, record.started_at
            )
            record.state = TaskState.RUNNING
            self._live.state(record.id, record.state, record.started_at)
        record.subtasks_total = len(parts)
        self._tasks.parts_set(task, parts)
        task.progress.subtasks_total = len(parts)
        task.progress.subtasks_done = len(parts) - len(todo)
        if task.id not in self._active:
            return
        type_cls = self._registry.get(record.type)
        max_retries = record.max_retries if record.max_retries is not None else type_cls.max_retries
        decisions = self._sched.handle(
            sch.TaskReady(
                record.id,
                record.type,
                record.priority,
                todo,
                max_retries=max_retries,
                attempts_made=attempts,
                failures_made=failures,
                held=held or {},
                speculative=type_cls.speculative,
                max_parallel=record.max_parallel,
                labels=frozenset(type_cls.labels).union(record.labels),
            ),
            time.monotonic(),
        )
        dispatcher = self._dispatcher
        dispatcher.carry_out(decisions)
        dispatcher.kick()
