"""Submissions: each checked against its type, admitted under --max-pending, stored, started.

`submit_many` commits the batch before it answers: an insert is what tells that a given id is
taken (409). `submit_and_wait` dispatches a task whose id the master makes before its row is
committed, and answers after that commit. Imports the master's `core`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import replace
from typing import Any

from herder.master.core import EarlySplit, Master, Rejected, Submission
from herder.model import JSON, TaskError, TaskRecord


async def submit_many(
    master: Master, subs: Sequence[Submission]
) -> list[dict[str, JSON] | Rejected]:
    """Validate, admit and commit; each item is the task's JSON or why it was refused.

    Admission is all-or-nothing for the batch: if it does not fit under --max-pending the
    whole call raises Rejected(429) and nothing is stored.
    """
    checked: list[tuple[TaskRecord, Any] | Rejected] = []
    for sub in subs:
        try:
            checked.append(master.validate(sub))
        except Rejected as exc:
            checked.append(exc)
    seen: set[str] = set()
    for i, c in enumerate(checked):
        if isinstance(c, Rejected):
            continue
        if c[0].id in seen or c[0].id in master.active:
            checked[i] = Rejected(409, f"id: task {c[0].id!r} already exists")
        seen.add(c[0].id)
    valid = [c for c in checked if not isinstance(c, Rejected)]
    master.reserve(len(valid))
    # A quick split runs now, and its task is stored running with its subtasks.
    splits = [master.split_now(record, params) for record, params in valid]
    try:
        inserted = await master.store.commit(
            master.store.store.insert_tasks,
            [record for record, _ in valid],
            [s.texts if isinstance(s, EarlySplit) else None for s in splits],
        )
    except BaseException:
        master.unreserve(len(valid))
        raise
    results: list[dict[str, JSON] | Rejected] = []
    ok = iter(zip(valid, splits, inserted, strict=True))
    for c in checked:
        if isinstance(c, Rejected):
            results.append(c)
            continue
        (record, params), split, was_inserted = next(ok)
        if not was_inserted:
            master.unreserve(1)
            results.append(Rejected(409, f"id: task {record.id!r} already exists"))
            continue
        task = master.admit(record, params)
        master.take_up(task, split)
        # as submitted: running with none dispatched yet, or pending while it splits
        results.append(master.view(task))
    # Dispatch now, not at the next turn of the loop: the workers get the new subtasks
    # before the answer to this submission is even encoded.
    master.pump()
    return results


async def submit_and_wait(master: Master, sub: Submission, wait: float) -> dict[str, JSON]:
    """Submit one task and answer when it has finished, or after `wait` seconds with its
    JSON then. Raises Rejected.

    A task whose id the master makes cannot clash with a stored one, so it is dispatched
    before its row is committed: the row goes in the next transaction, usually the one that
    commits its result, and the answer waits for that commit. The promise is the same (no
    answer before the commit) with one commit fewer on the way of a call and its result.
    """
    stored: Awaitable[list[bool]] | None = None
    if sub.id is not None:  # a given id may be taken: its insert says so, first
        (answer,) = await submit_many(master, [sub])
        if isinstance(answer, Rejected):
            raise answer
        task_id = str(answer["id"])
    else:
        record, params = master.validate(sub)
        master.reserve(1)
        split = master.split_now(record, params)
        texts = split.texts if isinstance(split, EarlySplit) else None
        # a copy: the row is made later, and this record is the live one, soon finished
        stored = master.store.write(master.store.store.insert_tasks, [replace(record)], [texts])
        # no answer made now: it comes at the end
        master.take_up(master.admit(record, params), split)
        master.pump()
        # While a worker runs it, commit the writes waiting (this task's row, the journal)
        # in one transaction: else they would go in the commit of its result, which the
        # answer waits for. Started after the dispatch, so its frames go out first.
        master.spawn(_commit_waiting(master))
        task_id = record.id
    finished = await master.wait_finished(task_id, wait)
    if stored is not None:
        try:
            await stored
        except Exception as exc:
            master.fail(task_id, TaskError(message=f"the task could not be stored: {exc}"))
            raise
    task = finished or await master.get(task_id)
    if task is None:  # cannot happen: a task once stored stays
        raise Rejected(404, f"task {task_id!r} not found")
    return task


async def _commit_waiting(master: Master) -> None:
    await master.journal.flush()  # the journal's rows and the writes waiting, in one commit
    master.store.flush()  # the writes, when the journal had no row to store
