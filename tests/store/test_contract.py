"""The store contract (herder.store.base.Store), tested once for every backend.

Every test here takes the `store` or `store_factory` fixture, so each runs against each backend
of conftest.py (SQLite, and PostgreSQL on a server the session starts). The last section holds
the few checks that only make sense for SQLite; PostgreSQL's are in test_postgres.py.
Imports `herder.errors`, `herder.model`, `herder.store`.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.errors import HerderError
from herder.jsontext import JSONText
from herder.model import (
    JSON,
    LogRecord,
    SubtaskRecord,
    SubtaskState,
    TaskError,
    TaskRecord,
    TaskState,
)
from herder.store import sqlite as sqlite_backend
from herder.store.base import Store
from herder.store.rows import encode
from herder.store.sqlite import SqliteStore

StoreFactory = Callable[[], Store]  # as in conftest.py

_ids = itertools.count()


def new_task(**fields: object) -> TaskRecord:
    """A pending task with a fresh id; `fields` override the defaults."""
    values: dict[str, object] = {
        "id": f"t{next(_ids)}",
        "type": "noop",
        "params": {"value": 1},
        "created_at": 1000.0,
    }
    values.update(fields)
    return TaskRecord(**values)  # type: ignore[arg-type]


def started(store: Store, parts: int = 3, **fields: object) -> TaskRecord:
    """A task stored and split into `parts` subtasks whose parts are their index."""
    task = new_task(**fields)
    assert store.insert_tasks([task]) == [True]
    start_task(store, task.id, list(range(parts)), started_at=1001.0)
    return task


# The single-item forms the tests use, over the contract's batches.


def start_task(store: Store, task_id: str, parts: list[JSON], started_at: float) -> None:
    store.start_tasks([(task_id, parts, started_at)])


def set_task_state(store: Store, task_id: str, state: TaskState) -> None:
    store.set_task_states([(task_id, state)])


def finish_task(
    store: Store,
    task_id: str,
    state: TaskState,
    finished_at: float,
    result: JSON = None,
    error: TaskError | None = None,
) -> bool:
    (finished,) = store.finish_tasks([(task_id, state, finished_at, result, error)])
    return finished


def start_attempt(
    store: Store,
    task_id: str,
    index: int,
    attempt: int,
    worker: str,
    started_at: float,
    worker_uid: str | None = None,
) -> None:
    store.start_attempts([(task_id, index, attempt, worker, started_at, worker_uid)])


def record_result(
    store: Store, task_id: str, index: int, attempt: int, result: JSON, finished_at: float
) -> bool:
    (recorded,) = store.record_results(
        [(task_id, index, attempt, encode(result), finished_at, None, None, None)]
    )
    return recorded


def states(store: Store, task_id: str) -> list[SubtaskState]:
    return [s.state for s in store.get_subtasks(task_id)]


BOOM = TaskError(message="boom", subtask=1, worker="w1", traceback="Traceback ...", attempt=2)


# -- tasks ----------------------------------------------------------------------------------


def test_a_task_round_trips_every_field(store: Store) -> None:
    full = new_task(
        type="wordcount",
        params={"text": 'héllo \u2603 "quoted"', "parts": 4, "nested": {"a": [1, 2.5, None]}},
        priority=-7,
        timeout=30.5,
        state=TaskState.RUNNING,
        result={"top": [["a", 3]], "ok": True},
        error=BOOM,
        created_at=1700000000.125,
        started_at=1700000001.25,
        finished_at=1700000002.5,
        subtasks_total=4,
        max_retries=5,
    )
    bare = new_task()
    assert store.insert_tasks([full, bare]) == [True, True]

    assert store.get_task(full.id) == full
    assert store.get_task(bare.id) == bare


def test_a_tasks_max_parallel_and_labels_survive_every_read(store: Store) -> None:
    """What a restarted master schedules the task by: its own cap and the labels it asked
    for, from every read that hands out tasks."""
    capped = new_task(max_parallel=3, labels=("gpu", "ssd"))
    bare = new_task()
    assert store.insert_tasks([capped, bare]) == [True, True]
    assert store.get_task(capped.id) == capped
    assert [t for t in store.unfinished_tasks() if t.id == capped.id] == [capped]
    assert sorted(store.get_tasks([capped.id, bare.id]), key=lambda t: t.id != capped.id) == [
        capped, bare
    ]
    again = store.get_task(bare.id)
    assert again is not None and (again.max_parallel, again.labels) == (None, ())


def test_whole_number_times_come_back_as_floats(store: Store) -> None:
    task = new_task(timeout=30, created_at=5)
    store.insert_tasks([task])

    got = store.get_task(task.id)
    assert got is not None
    assert (got.timeout, got.created_at) == (30.0, 5.0)
    assert type(got.timeout) is float
    assert type(got.created_at) is float


def test_an_unknown_task_is_none(store: Store) -> None:
    assert store.get_task("nope") is None


def test_a_duplicate_id_is_skipped_and_the_first_kept(store: Store) -> None:
    first = new_task(params={"n": 1})
    assert store.insert_tasks([first]) == [True]

    again = new_task(id=first.id, params={"n": 2})
    other = new_task()
    assert store.insert_tasks([again, other]) == [False, True]
    assert store.get_task(first.id) == first
    assert store.get_task(other.id) == other


def test_a_duplicate_id_within_one_batch_is_skipped(store: Store) -> None:
    one = new_task(params={"n": 1})
    two = new_task(id=one.id, params={"n": 2})

    assert store.insert_tasks([one, two]) == [True, False]
    assert store.get_task(one.id) == one


def test_inserting_nothing_is_allowed(store: Store) -> None:
    assert store.insert_tasks([]) == []


def test_list_is_newest_first_and_filters_by_state_and_type(store: Store) -> None:
    tasks = [
        new_task(type="noop", state=TaskState.PENDING),
        new_task(type="sleep", state=TaskState.RUNNING),
        new_task(type="noop", state=TaskState.RUNNING),
        new_task(type="sleep", state=TaskState.SUCCEEDED),
        new_task(type="noop", state=TaskState.SUCCEEDED),
    ]
    store.insert_tasks(tasks)
    newest_first = tasks[::-1]

    def ids(page: tuple[list[TaskRecord], str | None]) -> list[str]:
        assert page[1] is None
        return [t.id for t in page[0]]

    assert ids(store.list_tasks()) == [t.id for t in newest_first]
    assert ids(store.list_tasks(state=TaskState.RUNNING)) == [tasks[2].id, tasks[1].id]
    assert ids(store.list_tasks(type="sleep")) == [tasks[3].id, tasks[1].id]
    assert ids(store.list_tasks(state=TaskState.SUCCEEDED, type="noop")) == [tasks[4].id]
    assert ids(store.list_tasks(state=TaskState.FAILED)) == []
    assert store.list_tasks()[0] == newest_first


def test_list_pages_through_everything_with_its_cursor(store: Store) -> None:
    tasks = [new_task(type="noop" if i % 2 else "sleep") for i in range(25)]
    store.insert_tasks(tasks)

    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    while True:
        page, cursor = store.list_tasks(limit=10, cursor=cursor)
        sizes.append(len(page))
        seen += [t.id for t in page]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert sizes == [10, 10, 5]
    assert seen == [t.id for t in reversed(tasks)]

    # The same with a filter: 12 "noop" tasks in pages of 5.
    seen = []
    cursor = None
    while True:
        page, cursor = store.list_tasks(type="noop", limit=5, cursor=cursor)
        seen += [t.id for t in page]
        if cursor is None:
            break
    assert seen == [t.id for t in reversed(tasks) if t.type == "noop"]


def test_a_full_last_page_has_no_next_cursor(store: Store) -> None:
    store.insert_tasks([new_task() for _ in range(20)])

    first, cursor = store.list_tasks(limit=10)
    second, after = store.list_tasks(limit=10, cursor=cursor)
    assert (len(first), len(second), after) == (10, 10, None)


def test_a_cursor_is_stable_while_new_tasks_arrive(store: Store) -> None:
    old = [new_task() for _ in range(6)]
    store.insert_tasks(old)
    first, cursor = store.list_tasks(limit=3)

    store.insert_tasks([new_task() for _ in range(4)])
    second, end = store.list_tasks(limit=3, cursor=cursor)

    assert [t.id for t in first + second] == [t.id for t in reversed(old)]
    assert end is None


def test_list_limit_is_clamped_to_1_through_1000(store: Store) -> None:
    store.insert_tasks([new_task() for _ in range(1001)])

    assert len(store.list_tasks(limit=0)[0]) == 1
    assert len(store.list_tasks(limit=-5)[0]) == 1
    page, cursor = store.list_tasks(limit=5000)
    assert len(page) == 1000
    assert cursor is not None


@pytest.mark.parametrize("cursor", ["not-a-cursor", "-1", "\u00b2", "1.5"])
def test_list_refuses_a_cursor_it_did_not_give(store: Store, cursor: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        store.list_tasks(cursor=cursor)


def test_list_takes_any_digit_cursor(store: Store) -> None:
    tasks = [new_task() for _ in range(3)]
    store.insert_tasks(tasks)

    assert store.list_tasks(cursor="9" * 40) == (tasks[::-1], None)
    assert store.list_tasks(cursor="0") == ([], None)


def test_get_tasks_finds_the_ids_that_exist_however_many(store: Store) -> None:
    tasks = [new_task(params={"n": i}) for i in range(1203)]  # more than one query's worth
    assert all(store.insert_tasks(tasks))
    finish_task(store, tasks[5].id, TaskState.SUCCEEDED, 1002.0, result={"r": 5})
    asked = [t.id for t in reversed(tasks)] + ["nobody", tasks[0].id]
    got = {t.id: t for t in store.get_tasks(asked)}
    assert set(got) == {t.id for t in tasks}
    assert got[tasks[5].id].state is TaskState.SUCCEEDED and got[tasks[5].id].result == {"r": 5}
    assert got[tasks[7].id].params == {"n": 7}
    assert store.get_tasks([]) == []


def test_count_unfinished_counts_the_states_not_final(store: Store) -> None:
    assert store.count_unfinished() == 0
    store.insert_tasks([new_task(state=state) for state in TaskState])
    assert store.count_unfinished() == 4  # scheduled, pending, running, aggregating

    pending = new_task()
    store.insert_tasks([pending])
    assert store.count_unfinished() == 5
    finish_task(store, pending.id, TaskState.CANCELLED, finished_at=2000.0)
    assert store.count_unfinished() == 4


def test_unfinished_tasks_are_oldest_first(store: Store) -> None:
    tasks = [new_task(state=state) for state in TaskState] + [new_task()]
    store.insert_tasks(tasks)

    unfinished = store.unfinished_tasks()
    assert unfinished == [t for t in tasks if not t.state.finished]
    assert [t.state for t in unfinished] == [
        TaskState.SCHEDULED,
        TaskState.PENDING,
        TaskState.RUNNING,
        TaskState.AGGREGATING,
        TaskState.PENDING,
    ]


def test_start_task_stores_subtasks_in_index_order(store: Store) -> None:
    task = new_task()
    store.insert_tasks([task])
    parts = [{"range": [i * 10, i * 10 + 10]} for i in range(12)]

    start_task(store, task.id, parts, started_at=1234.5)

    got = store.get_task(task.id)
    assert got is not None
    assert (got.state, got.started_at, got.subtasks_total) == (TaskState.RUNNING, 1234.5, 12)
    assert store.get_subtasks(task.id) == [
        SubtaskRecord(task_id=task.id, index=i, part=part) for i, part in enumerate(parts)
    ]
    assert store.get_results(task.id) == [None] * 12


def test_a_task_split_before_it_is_stored_is_stored_with_its_subtasks(store: Store) -> None:
    # The master splits a task of a quick split before storing it: the row says running and
    # its subtasks go in the same insert. A task given no parts is stored as its record says;
    # one whose id is taken keeps its own subtasks.
    taken = started(store, parts=2)
    split = new_task(state=TaskState.RUNNING, started_at=1001.5, subtasks_total=3)
    plain = new_task()
    again = new_task(id=taken.id, state=TaskState.RUNNING, started_at=1002.0, subtasks_total=1)
    parts = [JSONText('{"a":1}'), JSONText("[2]"), JSONText("null")]

    assert store.insert_tasks([split, plain, again], [parts, None, [JSONText('"x"')]]) == [
        True, True, False,
    ]

    got = store.get_task(split.id)
    assert got is not None
    assert (got.state, got.started_at, got.subtasks_total) == (TaskState.RUNNING, 1001.5, 3)
    assert store.get_subtasks(split.id) == [
        SubtaskRecord(task_id=split.id, index=i, part=part)
        for i, part in enumerate([{"a": 1}, [2], None])
    ]
    assert [t.id for t in store.unfinished_tasks()] == [taken.id, split.id, plain.id]
    assert store.get_subtasks(plain.id) == []
    assert [s.part for s in store.get_subtasks(taken.id)] == [0, 1]


def test_subtasks_are_read_a_page_at_a_time_in_index_order(store: Store) -> None:
    task = started(store, parts=7)

    def page(after: int, limit: int | None) -> list[int]:
        return [s.index for s in store.get_subtasks(task.id, after=after, limit=limit)]

    assert page(-1, 3) == [0, 1, 2]
    assert page(2, 3) == [3, 4, 5]
    assert page(5, 3) == [6]
    assert page(6, 3) == []
    assert page(3, None) == [4, 5, 6]
    assert page(-1, 0) == []
    # a cursor past any index a task can have reads nothing, on every backend
    assert page(2**63 - 1, 3) == []
    assert page(2**70, 3) == []
    assert store.get_subtasks(task.id) == store.get_subtasks(task.id, after=-1, limit=10)


def test_json_text_is_stored_as_the_value_it_encodes(store: Store) -> None:
    # The master hands over parts and results it has encoded already (to check them): stored
    # as they are, not encoded again as strings; a plain str is still a JSON string.
    task = new_task()
    store.insert_tasks([task])
    start_task(store, task.id, [JSONText('{"a":[1,2]}'), '{"a":[1,2]}'], started_at=1.0)
    assert [s.part for s in store.get_subtasks(task.id)] == [{"a": [1, 2]}, '{"a":[1,2]}']
    store.finish_tasks([(task.id, TaskState.SUCCEEDED, 2.0, JSONText('{"sum":3}'), None)])
    got = store.get_task(task.id)
    assert got is not None
    assert got.result == {"sum": 3}


def test_start_task_with_no_parts(store: Store) -> None:
    task = new_task()
    store.insert_tasks([task])

    start_task(store, task.id, [], started_at=1.0)

    got = store.get_task(task.id)
    assert got is not None
    assert (got.state, got.subtasks_total) == (TaskState.RUNNING, 0)
    assert store.get_subtasks(task.id) == []


def test_start_task_does_nothing_unless_pending(store: Store) -> None:
    # Cancelled while its split ran: the split's late outcome must not revive it.
    task = new_task()
    store.insert_tasks([task])
    finish_task(store, task.id, TaskState.CANCELLED, finished_at=5.0)
    start_task(store, task.id, [1, 2], started_at=6.0)
    got = store.get_task(task.id)
    assert got is not None
    assert (got.state, got.started_at) == (TaskState.CANCELLED, None)
    assert store.get_subtasks(task.id) == []

    # Started twice (a restart that split again): the first subtasks stay.
    twice = started(store, parts=2)
    start_task(store, twice.id, ["x", "y", "z"], started_at=9.0)
    assert [s.part for s in store.get_subtasks(twice.id)] == [0, 1]
    again = store.get_task(twice.id)
    assert again is not None
    assert again.subtasks_total == 2


def test_set_task_state_moves_running_to_aggregating(store: Store) -> None:
    task = started(store)

    set_task_state(store, task.id, TaskState.AGGREGATING)

    got = store.get_task(task.id)
    assert got is not None
    assert got.state is TaskState.AGGREGATING


def test_set_task_state_leaves_a_finished_task_alone(store: Store) -> None:
    task = started(store)
    finish_task(store, task.id, TaskState.TIMED_OUT, finished_at=9.0)

    set_task_state(store, task.id, TaskState.AGGREGATING)

    got = store.get_task(task.id)
    assert got is not None
    assert got.state is TaskState.TIMED_OUT


def test_set_task_state_refuses_a_final_state(store: Store) -> None:
    task = started(store)
    with pytest.raises(ValueError):
        set_task_state(store, task.id, TaskState.SUCCEEDED)
    got = store.get_task(task.id)
    assert got is not None
    assert got.state is TaskState.RUNNING


def test_finish_task_stores_result_and_happens_once(store: Store) -> None:
    task = started(store, parts=2)
    record_result(store, task.id, 0, 1, "a", finished_at=10.0)
    record_result(store, task.id, 1, 1, "b", finished_at=11.0)
    set_task_state(store, task.id, TaskState.AGGREGATING)

    assert finish_task(store, task.id, TaskState.SUCCEEDED, 12.0, result=["a", "b"]) is True
    assert finish_task(store, task.id, TaskState.FAILED, 13.0, error=BOOM) is False

    got = store.get_task(task.id)
    assert got is not None
    assert (got.state, got.finished_at, got.result, got.error) == (
        TaskState.SUCCEEDED,
        12.0,
        ["a", "b"],
        None,
    )


def test_finish_task_stores_the_error(store: Store) -> None:
    task = started(store)

    assert finish_task(store, task.id, TaskState.FAILED, 20.0, error=BOOM) is True

    got = store.get_task(task.id)
    assert got is not None
    assert (got.state, got.error, got.result) == (TaskState.FAILED, BOOM, None)


def test_finish_task_of_an_unknown_task_is_false(store: Store) -> None:
    assert finish_task(store, "nope", TaskState.CANCELLED, 1.0) is False


def test_finish_task_refuses_a_non_final_state(store: Store) -> None:
    task = started(store)
    with pytest.raises(ValueError):
        finish_task(store, task.id, TaskState.AGGREGATING, 1.0)


@pytest.mark.parametrize("end", [TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT])
def test_finishing_unsuccessfully_cancels_open_subtasks(store: Store, end: TaskState) -> None:
    task = started(store, parts=4)
    start_attempt(store, task.id, 1, 1, "w1", started_at=2.0)
    start_attempt(store, task.id, 2, 1, "w1", started_at=2.0)
    record_result(store, task.id, 2, 1, "done", finished_at=3.0)
    start_attempt(store, task.id, 3, 1, "w2", started_at=2.0)
    store.record_failure(task.id, 3, 1, BOOM, final=True, finished_at=4.0)

    assert finish_task(store, task.id, end, finished_at=50.0) is True

    subtasks = store.get_subtasks(task.id)
    assert [s.state for s in subtasks] == [
        SubtaskState.CANCELLED,
        SubtaskState.CANCELLED,
        SubtaskState.SUCCEEDED,
        SubtaskState.FAILED,
    ]
    assert [s.finished_at for s in subtasks] == [50.0, 50.0, 3.0, 4.0]
    assert store.get_results(task.id) == [None, None, "done", None]


def test_the_batched_calls_do_what_one_call_each_would(store: Store) -> None:
    pending = [new_task() for _ in range(3)]
    cancelled = new_task()
    store.insert_tasks([*pending, cancelled])
    finish_task(store, cancelled.id, TaskState.CANCELLED, finished_at=5.0)

    store.start_tasks(
        [(pending[0].id, ["a"], 10.0), (cancelled.id, [1], 10.0), (pending[1].id, [1, 2], 11.0)]
    )
    assert [s.part for s in store.get_subtasks(pending[0].id)] == ["a"]
    assert [s.part for s in store.get_subtasks(pending[1].id)] == [1, 2]
    assert store.get_subtasks(cancelled.id) == []  # a cancelled task stays so

    store.set_task_states(
        [(pending[0].id, TaskState.AGGREGATING), (cancelled.id, TaskState.AGGREGATING)]
    )
    with pytest.raises(ValueError, match="non-final"):
        store.set_task_states([(pending[1].id, TaskState.SUCCEEDED)])

    start_attempt(store, pending[1].id, 0, 1, "w1", started_at=12.0)
    store.finish_tasks(
        [
            (pending[0].id, TaskState.SUCCEEDED, 20.0, {"n": 1}, None),
            (pending[1].id, TaskState.FAILED, 21.0, None, BOOM),
            (cancelled.id, TaskState.SUCCEEDED, 22.0, "late", None),  # already final: kept
            (pending[2].id, TaskState.TIMED_OUT, 23.0, None, None),
        ]
    )
    got = {t.id: store.get_task(t.id) for t in [*pending, cancelled]}
    assert [(g.state, g.finished_at, g.result, g.error) for g in got.values() if g] == [
        (TaskState.SUCCEEDED, 20.0, {"n": 1}, None),
        (TaskState.FAILED, 21.0, None, BOOM),
        (TaskState.TIMED_OUT, 23.0, None, None),
        (TaskState.CANCELLED, 5.0, None, None),
    ]
    assert states(store, pending[1].id) == [SubtaskState.CANCELLED, SubtaskState.CANCELLED]


def test_finishing_successfully_leaves_subtasks_alone(store: Store) -> None:
    task = started(store, parts=2)
    record_result(store, task.id, 0, 1, 0, finished_at=3.0)

    assert finish_task(store, task.id, TaskState.SUCCEEDED, 5.0, result=0) is True
    assert states(store, task.id) == [SubtaskState.SUCCEEDED, SubtaskState.QUEUED]


def test_a_refused_finish_changes_no_subtask(store: Store) -> None:
    task = started(store, parts=2)
    finish_task(store, task.id, TaskState.SUCCEEDED, 5.0, result=None)

    assert finish_task(store, task.id, TaskState.CANCELLED, 6.0) is False
    assert states(store, task.id) == [SubtaskState.QUEUED, SubtaskState.QUEUED]


# -- subtasks -------------------------------------------------------------------------------


def test_start_attempt_marks_the_subtask_running(store: Store) -> None:
    task = started(store)

    start_attempt(store, task.id, 1, attempt=1, worker="w1", started_at=7.5, worker_uid="u1")

    sub = store.get_subtasks(task.id)[1]
    assert (
        sub.state, sub.attempts, sub.worker, sub.started_at, sub.finished_at, sub.worker_uid
    ) == (SubtaskState.RUNNING, 1, "w1", 7.5, None, "u1")
    assert states(store, task.id)[::2] == [SubtaskState.QUEUED, SubtaskState.QUEUED]


def test_a_second_attempt_takes_over_and_attempts_never_go_back(store: Store) -> None:
    task = started(store)
    start_attempt(store, task.id, 0, 1, "w1", started_at=1.0, worker_uid="u1")
    start_attempt(store, task.id, 0, 2, "w2", started_at=2.0, worker_uid="u2")
    # a stale call, crossed in flight
    start_attempt(store, task.id, 0, 1, "w3", started_at=3.0, worker_uid="u3")

    sub = store.get_subtasks(task.id)[0]
    assert sub.attempts == 2
    assert sub.state is SubtaskState.RUNNING
    # the start stored is the stored attempt's: after a restart only its worker claims it back
    assert (sub.worker, sub.started_at, sub.worker_uid) == ("w2", 2.0, "u2")


def test_a_subtask_queued_again_names_no_worker_uid(store: Store) -> None:
    task = started(store, parts=2)
    start_attempt(store, task.id, 0, 1, "w1", started_at=1.0, worker_uid="u1")
    start_attempt(store, task.id, 1, 1, "w1", started_at=1.0, worker_uid="u1")

    store.requeue_subtask(task.id, 0)
    store.record_failure(task.id, 1, 1, BOOM, final=False, finished_at=2.0)

    assert [(s.state, s.worker, s.worker_uid) for s in store.get_subtasks(task.id)] == [
        (SubtaskState.QUEUED, None, None),
        (SubtaskState.QUEUED, None, None),
    ]


def test_start_attempt_leaves_a_finished_subtask_alone(store: Store) -> None:
    task = started(store)
    start_attempt(store, task.id, 0, 1, "w1", started_at=1.0)
    record_result(store, task.id, 0, 1, "r", finished_at=2.0)

    start_attempt(store, task.id, 0, 2, "w2", started_at=3.0)

    sub = store.get_subtasks(task.id)[0]
    assert (sub.state, sub.worker, sub.result) == (SubtaskState.SUCCEEDED, "w1", "r")


def test_a_result_is_recorded_exactly_once(store: Store) -> None:
    task = started(store)
    start_attempt(store, task.id, 1, 1, "w1", started_at=1.0)
    start_attempt(store, task.id, 1, 2, "w2", started_at=2.0)  # a speculative second attempt

    assert record_result(store, task.id, 1, 2, {"n": 2}, finished_at=3.0) is True
    assert record_result(store, task.id, 1, 1, {"n": 1}, finished_at=4.0) is False
    assert record_result(store, task.id, 1, 2, {"n": 2}, finished_at=5.0) is False

    sub = store.get_subtasks(task.id)[1]
    assert (sub.state, sub.result, sub.finished_at, sub.attempts) == (
        SubtaskState.SUCCEEDED,
        {"n": 2},
        3.0,
        2,
    )
    assert store.get_results(task.id) == [None, {"n": 2}, None]


def test_a_batch_of_results_records_each_as_one_call_would(store: Store) -> None:
    # The batch mixes results the store takes with ones it turns away (a second result for the
    # same subtask, an unknown subtask, a failed one): each is told apart, none leaves a trace.
    task = started(store, parts=3)
    store.record_failure(task.id, 2, 1, BOOM, final=True, finished_at=1.0)
    recorded = store.record_results(
        [
            (task.id, 0, 1, '"a"', 2.0, None, None, None),
            (task.id, 0, 2, '"again"', 3.0, None, None, None),
            (task.id, 9, 1, '"unknown"', 4.0, None, None, None),
            (task.id, 2, 1, '"late"', 5.0, None, None, None),
            (task.id, 1, 3, '"b"', 6.0, None, None, None),
        ]
    )
    assert recorded == [True, False, False, False, True]
    assert store.get_results(task.id) == ["a", "b", None]
    subs = store.get_subtasks(task.id)
    assert [(s.state, s.attempts, s.finished_at) for s in subs] == [
        (SubtaskState.SUCCEEDED, 1, 2.0),
        (SubtaskState.SUCCEEDED, 3, 6.0),
        (SubtaskState.FAILED, 1, 1.0),
    ]
    # all taken: the fast way, one statement for the whole batch
    other = started(store, parts=2)
    items = [(other.id, i, 1, str(i), 7.0, None, None, None) for i in range(2)]
    assert store.record_results(items) == [True] * 2
    assert store.get_results(other.id) == [0, 1]


def test_a_result_carries_the_start_of_its_attempt_when_it_was_not_written(store: Store) -> None:
    # The master writes a short attempt's start with its result (one row write): the subtask
    # ends as it would after a start_attempt and a record_result.
    task = started(store, parts=3)
    start_attempt(store, task.id, 1, 1, "w-written", 1.0, worker_uid="u-written")
    recorded = store.record_results(
        [
            (task.id, 0, 1, '"a"', 2.5, "w-carried", 2.0, "u-carried"),  # never started
            (task.id, 1, 1, '"b"', 3.0, None, None, None),  # its start is stored: it stays
        ]
    )
    assert recorded == [True, True]
    subs = store.get_subtasks(task.id)
    assert [
        (s.state, s.attempts, s.worker, s.started_at, s.finished_at, s.worker_uid) for s in subs
    ] == [
        (SubtaskState.SUCCEEDED, 1, "w-carried", 2.0, 2.5, "u-carried"),
        (SubtaskState.SUCCEEDED, 1, "w-written", 1.0, 3.0, "u-written"),
        (SubtaskState.QUEUED, 0, None, None, None, None),
    ]
    # a late start of another attempt changes nothing once the subtask has its result
    start_attempt(store, task.id, 0, 2, "w-late", 4.0)
    assert store.get_subtasks(task.id)[0].worker == "w-carried"


def test_a_null_result_is_still_a_result(store: Store) -> None:
    task = started(store, parts=1)

    assert record_result(store, task.id, 0, 1, None, finished_at=1.0) is True
    assert record_result(store, task.id, 0, 1, "late", finished_at=2.0) is False
    assert store.get_results(task.id) == [None]
    assert states(store, task.id) == [SubtaskState.SUCCEEDED]


def test_a_result_for_a_requeued_subtask_counts(store: Store) -> None:
    # The worker was lost, its subtask queued again, then the worker came back with the result.
    task = started(store, parts=1)
    start_attempt(store, task.id, 0, 1, "w1", started_at=1.0)
    store.requeue_subtask(task.id, 0)

    assert record_result(store, task.id, 0, 1, 42, finished_at=2.0) is True
    assert store.get_results(task.id) == [42]


def test_no_result_for_an_unknown_or_finished_subtask(store: Store) -> None:
    task = started(store, parts=2)
    assert record_result(store, task.id, 7, 1, "x", finished_at=1.0) is False
    assert record_result(store, "nope", 0, 1, "x", finished_at=1.0) is False

    store.record_failure(task.id, 0, 1, BOOM, final=True, finished_at=2.0)
    assert record_result(store, task.id, 0, 1, "late", finished_at=3.0) is False

    finish_task(store, task.id, TaskState.CANCELLED, finished_at=4.0)
    assert record_result(store, task.id, 1, 1, "late", finished_at=5.0) is False

    assert store.get_results(task.id) == [None, None]
    assert states(store, task.id) == [SubtaskState.FAILED, SubtaskState.CANCELLED]


def test_a_non_final_failure_queues_the_subtask_again_with_its_error(store: Store) -> None:
    task = started(store)
    start_attempt(store, task.id, 2, 1, "w1", started_at=1.0)

    store.record_failure(task.id, 2, 1, BOOM, final=False, finished_at=2.0)

    sub = store.get_subtasks(task.id)[2]
    assert (sub.state, sub.error, sub.attempts, sub.finished_at) == (
        SubtaskState.QUEUED,
        BOOM,
        1,
        None,
    )

    # The retry succeeds; the error stays as the last one seen.
    start_attempt(store, task.id, 2, 2, "w2", started_at=3.0)
    assert record_result(store, task.id, 2, 2, "ok", finished_at=4.0) is True
    sub = store.get_subtasks(task.id)[2]
    assert (sub.state, sub.result, sub.attempts, sub.worker, sub.error) == (
        SubtaskState.SUCCEEDED,
        "ok",
        2,
        "w2",
        BOOM,
    )


def test_a_final_failure_fails_the_subtask(store: Store) -> None:
    task = started(store)
    start_attempt(store, task.id, 0, 4, "w1", started_at=1.0)

    store.record_failure(task.id, 0, 4, BOOM, final=True, finished_at=9.0)

    sub = store.get_subtasks(task.id)[0]
    assert (sub.state, sub.error, sub.attempts, sub.finished_at) == (
        SubtaskState.FAILED,
        BOOM,
        4,
        9.0,
    )


def test_a_failure_cannot_undo_a_result(store: Store) -> None:
    task = started(store, parts=1)
    start_attempt(store, task.id, 0, 1, "w1", started_at=1.0)
    start_attempt(store, task.id, 0, 2, "w2", started_at=1.5)
    record_result(store, task.id, 0, 2, "won", finished_at=2.0)

    store.record_failure(task.id, 0, 1, BOOM, final=False, finished_at=3.0)
    store.record_failure(task.id, 0, 1, BOOM, final=True, finished_at=3.0)

    sub = store.get_subtasks(task.id)[0]
    assert (sub.state, sub.result, sub.error) == (SubtaskState.SUCCEEDED, "won", None)


def test_requeue_puts_a_running_subtask_back_without_a_failure(store: Store) -> None:
    task = started(store)
    start_attempt(store, task.id, 1, 3, "w1", started_at=1.0)

    store.requeue_subtask(task.id, 1)

    sub = store.get_subtasks(task.id)[1]
    assert (sub.state, sub.attempts, sub.error, sub.worker) == (SubtaskState.QUEUED, 3, None, None)


def test_requeue_leaves_subtasks_that_are_not_running_alone(store: Store) -> None:
    task = started(store, parts=2)
    record_result(store, task.id, 0, 1, "r", finished_at=1.0)

    store.requeue_subtask(task.id, 0)
    store.requeue_subtask(task.id, 1)

    assert states(store, task.id) == [SubtaskState.SUCCEEDED, SubtaskState.QUEUED]


def test_results_are_in_index_order_with_gaps(store: Store) -> None:
    task = started(store, parts=5)
    for index in (3, 0, 4):
        record_result(store, task.id, index, 1, {"i": index}, finished_at=float(index))

    assert store.get_results(task.id) == [{"i": 0}, None, None, {"i": 3}, {"i": 4}]
    assert store.get_results("nope") == []
    assert store.get_subtasks("nope") == []


# -- logs -----------------------------------------------------------------------------------


def log(
    task_id: str,
    message: str,
    subtask: int | None = None,
    attempt: int | None = None,
    worker: str | None = None,
) -> LogRecord:
    return LogRecord(task_id, 100.5, "INFO", message, subtask, attempt, worker)


def test_append_logs_sets_increasing_seqs_and_round_trips(store: Store) -> None:
    a, b = new_task(), new_task()
    store.insert_tasks([a, b])
    records = [
        log(a.id, "one", subtask=0, attempt=1, worker="w1"),
        log(b.id, "other task"),
        log(a.id, "two \u2603", subtask=1, attempt=2, worker="w2"),
    ]

    stored = store.logs.append(records)

    assert [r.seq for r in stored] == sorted({r.seq for r in stored})
    assert all(r.seq > 0 for r in stored)
    assert [(r.task_id, r.message, r.subtask, r.attempt, r.worker) for r in stored] == [
        (r.task_id, r.message, r.subtask, r.attempt, r.worker) for r in records
    ]
    assert store.logs.lines(a.id) == [stored[0], stored[2]]
    assert store.logs.lines(b.id) == [stored[1]]

    later = store.logs.append([log(a.id, "three")])
    assert later[0].seq > stored[2].seq
    assert store.logs.append([]) == []


def test_get_logs_since_and_limit(store: Store) -> None:
    task = new_task()
    store.insert_tasks([task])
    stored = store.logs.append([log(task.id, f"line {i}") for i in range(10)])

    assert store.logs.lines(task.id, since=stored[6].seq) == stored[7:]
    assert store.logs.lines(task.id, since=stored[-1].seq) == []
    assert store.logs.lines(task.id, since=stored[2].seq, limit=3) == stored[3:6]
    assert store.logs.lines(task.id, limit=0) == []
    assert store.logs.lines("nope") == []


def test_state_entries_share_the_journal_but_not_get_logs(store: Store) -> None:
    a, b = new_task(), new_task()
    store.insert_tasks([a, b])
    stored = store.logs.append(
        [
            LogRecord(a.id, 1.0, "INFO", "running", kind="state"),
            log(a.id, "line"),
            log(b.id, "other"),
            LogRecord(a.id, 2.0, "INFO", "succeeded", kind="state"),
        ]
    )
    assert store.logs.lines(a.id) == [stored[1]]
    assert [e.kind for e in store.logs.events(a.id)] == ["state", "log", "state"]
    assert store.logs.events(a.id, since=stored[1].seq) == [stored[3]]
    assert store.logs.events(None) == stored
    assert store.logs.events(None, since=stored[0].seq, limit=2) == stored[1:3]


def test_trim_logs_keeps_the_newest_and_counts_the_dropped(store: Store) -> None:
    task = new_task()
    store.insert_tasks([task])
    state = store.logs.append([LogRecord(task.id, 1.0, "INFO", "running", kind="state")])
    stored = store.logs.append([log(task.id, f"line {i}") for i in range(10)])
    assert store.logs.count(task.id) == 10

    assert store.logs.trim(task.id, keep=4) == 6
    assert store.logs.lines(task.id) == stored[6:]
    assert store.logs.count(task.id) == 4
    assert store.logs.events(task.id) == [*state, *stored[6:]]  # state entries are kept
    assert store.logs.trim(task.id, keep=4) == 0
    assert store.logs.trim(task.id, keep=1) == 3
    fetched = store.get_task(task.id)
    assert fetched is not None and fetched.logs_dropped == 9


# -- life -----------------------------------------------------------------------------------


def test_everything_survives_close_and_reopen(store_factory: StoreFactory) -> None:
    first = store_factory()
    task = started(first, parts=3, priority=3, timeout=9.5)
    start_attempt(first, task.id, 0, 1, "w1", started_at=2.0)
    record_result(first, task.id, 0, 1, [1, 2], finished_at=3.0)
    first.record_failure(task.id, 1, 1, BOOM, final=False, finished_at=3.5)
    logs = first.logs.append([log(task.id, "kept")])
    done = new_task()
    first.insert_tasks([done])
    finish_task(first, done.id, TaskState.FAILED, 4.0, error=BOOM)
    before = (first.get_task(task.id), first.get_task(done.id), first.get_subtasks(task.id))
    first.close()

    second = store_factory()

    assert (second.get_task(task.id), second.get_task(done.id), second.get_subtasks(task.id)) == (
        before
    )
    assert second.get_results(task.id) == [[1, 2], None, None]
    assert second.logs.lines(task.id) == logs
    assert [t.id for t in second.unfinished_tasks()] == [task.id]
    assert record_result(second, task.id, 0, 2, "again", finished_at=5.0) is False
    assert second.insert_tasks([new_task(id=task.id)]) == [False]
    assert second.logs.append([log(task.id, "next")])[0].seq > logs[0].seq


def test_migrate_again_is_harmless(store_factory: StoreFactory) -> None:
    store = store_factory()
    task = started(store, parts=2)

    store.migrate()
    store.migrate()
    other = store_factory()  # a second opening migrates the same database once more

    assert store.get_task(task.id) == other.get_task(task.id)
    assert [s.part for s in other.get_subtasks(task.id)] == [0, 1]
    assert other.insert_tasks([new_task()]) == [True]


def test_two_connections_never_record_two_results(store_factory: StoreFactory) -> None:
    # The store's one guarded update, not the code above it, keeps a result unique: two stores
    # on one database, racing on every subtask from two threads, still record each result once.
    stores = [store_factory(), store_factory()]
    task = started(stores[0], parts=40)
    wins: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    go = threading.Barrier(2)

    def race(n: int) -> None:
        try:
            go.wait(timeout=10)
            for index in range(40):
                if record_result(stores[n], task.id, index, n + 1, n, finished_at=1.0):
                    wins[n].append(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    assert sorted(wins[0] + wins[1]) == list(range(40))
    results = stores[1].get_results(task.id)
    assert all(results[i] == 0 for i in wins[0])
    assert all(results[i] == 1 for i in wins[1])


def test_processes_migrating_at_once_apply_each_version_once(
    store_factory: StoreFactory,
) -> None:
    # Masters started together on a new database all migrate it: each version is applied once
    # (a second application would fail on its CREATE TABLE or its schema_version row).
    opened: list[Store] = []
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def open_one() -> None:
        try:
            go.wait(timeout=10)
            opened.append(store_factory())  # (the factory migrates what it opens)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    task = started(opened[0], parts=2)
    assert [s.part for s in opened[3].get_subtasks(task.id)] == [0, 1]


# -- transactions ---------------------------------------------------------------------------


def test_a_transaction_commits_its_calls_together_at_its_end(store_factory: StoreFactory) -> None:
    store, other = store_factory(), store_factory()
    task = new_task()
    with store.transaction():
        assert store.insert_tasks([task]) == [True]
        start_task(store, task.id, [1, 2], started_at=2.0)
        with store.transaction():  # a nested one joins it
            assert record_result(store, task.id, 0, 1, "r", finished_at=3.0) is True
        # its own reads see its writes; another connection sees none of them yet
        assert states(store, task.id) == [SubtaskState.SUCCEEDED, SubtaskState.QUEUED]
        assert other.get_task(task.id) is None
        assert other.get_subtasks(task.id) == []
    assert other.get_task(task.id) == store.get_task(task.id)
    assert states(other, task.id) == [SubtaskState.SUCCEEDED, SubtaskState.QUEUED]


def test_a_transaction_that_raises_leaves_nothing(store_factory: StoreFactory) -> None:
    store, other = store_factory(), store_factory()
    kept = started(store, parts=1)
    task = new_task()
    with pytest.raises(RuntimeError, match="changed my mind"), store.transaction():
        store.insert_tasks([task])
        record_result(store, kept.id, 0, 1, "r", finished_at=3.0)
        with store.transaction():
            store.logs.append([log(kept.id, "never")])
        raise RuntimeError("changed my mind")
    for reader in (store, other):
        assert reader.get_task(task.id) is None
        assert reader.get_results(kept.id) == [None]
        assert reader.logs.lines(kept.id) == []
    # and the store goes on
    assert store.insert_tasks([task]) == [True]
    assert other.get_task(task.id) == task


# -- text the backends store differently -----------------------------------------------------


def test_a_nul_character_fails_no_batch_and_finds_nothing(store: Store) -> None:
    # NUL comes from a worker's log line or name, or a looked-up id: SQLite stores it as it is,
    # PostgreSQL's text cannot hold it and stores U+FFFD instead. Either way the batch is stored
    # whole, and an id holding one is nobody's.
    task = started(store, parts=1)
    stored = store.logs.append([log(task.id, "before"), log(task.id, "a\x00b", worker="w\x00"),
                                log(task.id, "after")])
    start_attempt(store, task.id, 0, 1, "w\x00", started_at=1.0)

    got = store.logs.lines(task.id)
    assert [r.seq for r in got] == [r.seq for r in stored]
    assert got[1].message in ("a\x00b", "a\ufffdb")
    assert [got[0].message, got[2].message] == ["before", "after"]
    assert store.get_subtasks(task.id)[0].worker in ("w\x00", "w\ufffd")
    assert store.get_task(task.id + "\x00") is None
    assert store.get_tasks([task.id + "\x00", task.id]) == [store.get_task(task.id)]
    assert finish_task(store, task.id + "\x00", TaskState.CANCELLED, 1.0) is False


# -- followers -------------------------------------------------------------------------------


def test_a_follower_resuming_after_the_last_seq_it_saw_misses_nothing(
    store_factory: StoreFactory,
) -> None:
    # An event stream resumes with "seq > the last one seen": that is right only if no entry
    # becomes visible after a larger one did. Two writers append while a reader follows.
    writers = [store_factory(), store_factory()]
    reader = store_factory()
    task = new_task()
    writers[0].insert_tasks([task])
    seen: list[LogRecord] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def write(n: int) -> None:
        try:
            for batch in range(60):
                writers[n].logs.append([log(task.id, f"{n}.{batch}.{i}") for i in range(3)])
        except BaseException as exc:
            errors.append(exc)

    def follow() -> None:
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                finished = done.is_set()  # read before the last look: nothing comes after it
                since = seen[-1].seq if seen else 0
                seen.extend(reader.logs.events(task.id, since=since, limit=1000))
                if finished:
                    return
            raise AssertionError("the writers did not finish within 60 s")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in (0, 1)]
    follower = threading.Thread(target=follow)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    follower.join(timeout=60)
    assert not follower.is_alive() and not any(t.is_alive() for t in threads)
    assert errors == []
    everything = reader.logs.events(task.id, limit=1000)
    assert len(everything) == 2 * 60 * 3
    assert [r.seq for r in seen] == [r.seq for r in everything]


# -- property: any interleaving of calls keeps one result per subtask --------------------

OPEN = {SubtaskState.QUEUED, SubtaskState.RUNNING}

# (kind, subtask index, argument): the attempt for start/result, 1 = final for fail.
operation = st.tuples(
    st.sampled_from(["start", "result", "fail", "requeue"]), st.integers(0, 3), st.integers(0, 5)
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operation, max_size=30))
def test_interleavings_record_at_most_one_result_per_subtask(
    store: Store, ops: list[tuple[str, int, int]]
) -> None:
    task = started(store, parts=4)  # a fresh task per example, on the test's one store
    expect = [SubtaskState.QUEUED] * 4
    first: dict[int, object] = {}

    for step, (kind, index, arg) in enumerate(ops):
        if kind == "start":
            start_attempt(store, task.id, index, arg, "w", started_at=float(step))
            if expect[index] in OPEN:
                expect[index] = SubtaskState.RUNNING
        elif kind == "result":
            value = {"step": step}
            recorded = record_result(store, task.id, index, arg, value, float(step))
            assert recorded is (expect[index] in OPEN)
            if recorded:
                first[index] = value
                expect[index] = SubtaskState.SUCCEEDED
        elif kind == "fail":
            final = arg == 1
            store.record_failure(task.id, index, 1, BOOM, final=final, finished_at=float(step))
            if expect[index] in OPEN:
                expect[index] = SubtaskState.FAILED if final else SubtaskState.QUEUED
        else:
            store.requeue_subtask(task.id, index)
            if expect[index] is SubtaskState.RUNNING:
                expect[index] = SubtaskState.QUEUED

    assert states(store, task.id) == expect
    assert store.get_results(task.id) == [first.get(i) for i in range(4)]


# -- SQLite only ----------------------------------------------------------------------------


_MIGRATIONS = sqlite_backend._migrations()
_KNOWN = [v for v, _, _ in _MIGRATIONS]
_NEXT = max(_KNOWN) + 1


@pytest.fixture
def migrated(tmp_path: Path) -> Iterator[SqliteStore]:
    """A SQLite store on a file, migrated; closed after the test."""
    store = SqliteStore(str(tmp_path / "sqlite.db"))
    try:
        store.migrate()
        yield store
    finally:
        store.close()


def test_sqlite_runs_in_wal_mode(migrated: SqliteStore) -> None:
    assert _db(migrated).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert _db(migrated).execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_sqlite_in_memory_works() -> None:
    store = SqliteStore(":memory:")
    try:
        store.migrate()
        task = new_task()
        assert store.insert_tasks([task]) == [True]
        assert store.get_task(task.id) == task
    finally:
        store.close()


_WRITER = """
import sys, time
from herder.model import TaskRecord
from herder.store import sqlite as sqlite_backend
from herder.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
store.migrate()
store.insert_tasks([TaskRecord(id="acked", type="noop", params={})])
print("committed", flush=True)
time.sleep(60)
"""


def test_sqlite_a_commit_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "committed"  # blocks until the commit returned
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    store = SqliteStore(str(path))
    try:
        store.migrate()
        task = store.get_task("acked")
        assert task is not None
        assert task.state is TaskState.PENDING
    finally:
        store.close()


def _db(store: SqliteStore) -> sqlite3.Connection:
    """The store's connection, for the checks that go around the contract."""
    return store._driver.db


def _versions(store: SqliteStore) -> list[int]:
    return [row[0] for row in _db(store).execute("SELECT version FROM schema_version")]


def test_sqlite_applies_a_later_migration_once_and_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "m.db")
    store = SqliteStore(path)
    store.migrate()
    assert _versions(store) == _KNOWN
    store.close()

    later = (
        _NEXT, "9999_extra.sql", "CREATE TABLE extra (x INTEGER);\nINSERT INTO extra VALUES (1);"
    )
    monkeypatch.setattr(sqlite_backend, "_migrations", lambda: (*_MIGRATIONS, later))
    store = SqliteStore(path)
    try:
        store.migrate()
        store.migrate()
        assert _versions(store) == [*_KNOWN, _NEXT]
        assert _db(store).execute("SELECT count(*) FROM extra").fetchone()[0] == 1
    finally:
        store.close()


def test_sqlite_a_failing_migration_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = (
        _NEXT,
        "9999_broken.sql",
        "CREATE TABLE half (x INTEGER);\nINSERT INTO nowhere VALUES (1);",
    )
    monkeypatch.setattr(sqlite_backend, "_migrations", lambda: (*_MIGRATIONS, broken))
    store = SqliteStore(str(tmp_path / "m.db"))
    try:
        with pytest.raises(sqlite3.OperationalError, match="nowhere"):
            store.migrate()
        assert _versions(store) == _KNOWN
        tables = {row[0] for row in _db(store).execute("SELECT name FROM sqlite_master")}
        assert "tasks" in tables
        assert "half" not in tables
    finally:
        store.close()


def test_sqlite_refuses_a_schema_newer_than_it_knows(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "m.db"))
    try:
        store.migrate()
        _db(store).execute("INSERT INTO schema_version VALUES (99, '0099_future.sql', 0)")
        with pytest.raises(HerderError, match="schema version 99"):
            store.migrate()
    finally:
        store.close()


_OLD_TASK_COLUMNS = (
    "SELECT seq, id, type, params, priority, timeout, state, result, error, created_at, "
    "started_at, finished_at, subtasks_total, max_retries, logs_dropped FROM tasks WHERE id = ?"
)
_OLD_TASK_ROW = (
    "INSERT INTO tasks (id, type, params, state, created_at) VALUES (?, ?, '{}', 'pending', ?)"
)


def test_sqlite_data_stored_before_the_later_migrations_survives_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store made by the first two migrations, with a task in every kind of row...
    path = str(tmp_path / "old.db")
    monkeypatch.setattr(sqlite_backend, "_migrations", lambda: _MIGRATIONS[:2])
    store = SqliteStore(path)
    store.migrate()
    task = new_task()  # its row as the code of that schema wrote it (today's has not_before)
    _db(store).execute(_OLD_TASK_ROW, (task.id, task.type, task.created_at))
    start_task(store, task.id, [0, 1, 2], started_at=1001.0)
    # starts as the code of that schema wrote them (today's query uses the column of 0008)
    _db(store).execute(
        "UPDATE subtasks SET state = 'running', attempts = 1, worker = 'w1', started_at = 2.0 "
        "WHERE task_id = ? AND idx IN (0, 1)",
        (task.id,),
    )
    # a result as the code of that schema wrote it (today's query uses the columns of 0006)
    _db(store).execute(
        "INSERT INTO subtask_results (task_id, idx, attempt, result, recorded_at) "
        """VALUES (?, 0, 1, '{"r":0}', 3.0)""",
        (task.id,),
    )
    _db(store).execute(
        "UPDATE subtasks SET state = 'succeeded', finished_at = 3.0 WHERE task_id = ? AND idx = 0",
        (task.id,),
    )
    store.logs.append([LogRecord(task_id=task.id, ts=1.0, level="INFO", message="hi")])
    stored = _db(store).execute(_OLD_TASK_COLUMNS, (task.id,)).fetchone()
    gone = new_task()  # the newest seq's row, then deleted: its seq is never handed out again
    _db(store).execute(_OLD_TASK_ROW, (gone.id, gone.type, gone.created_at))
    high_water = _db(store).execute("SELECT seq FROM tasks WHERE id = ?", (gone.id,)).fetchone()[0]
    _db(store).execute("DELETE FROM tasks WHERE id = ?", (gone.id,))
    store.close()
    # ...is the same store after the rest of them (0003 dropped an index, 0004 and 0005 rebuilt
    # tables, 0006 moved results into the subtasks' rows, 0007 made the state index partial,
    # 0008 added the worker's uid to a start, 0009 rebuilt tasks with the state scheduled, 0010
    # added schedules)
    monkeypatch.setattr(sqlite_backend, "_migrations", lambda: _MIGRATIONS)
    store = SqliteStore(path)
    try:
        store.migrate()
        assert _versions(store) == _KNOWN
        assert _db(store).execute(_OLD_TASK_COLUMNS, (task.id,)).fetchone() == stored
        migrated_task = store.get_task(task.id)
        assert migrated_task is not None
        assert (migrated_task.state, migrated_task.not_before) == (TaskState.RUNNING, None)
        later = new_task()
        store.insert_tasks([later])
        seq = _db(store).execute("SELECT seq FROM tasks WHERE id = ?", (later.id,)).fetchone()[0]
        assert seq == high_water + 1
        assert states(store, task.id) == [
            SubtaskState.SUCCEEDED, SubtaskState.RUNNING, SubtaskState.QUEUED
        ]
        assert store.get_results(task.id) == [{"r": 0}, None, None]
        first, second = store.get_subtasks(task.id)[:2]
        assert (first.result, first.worker, first.started_at, first.finished_at) == (
            {"r": 0}, "w1", 2.0, 3.0
        )
        # 0008: a start written before names no worker uid, so nobody may claim it back
        assert (second.worker, second.started_at, second.worker_uid) == ("w1", 2.0, None)
        recorded_by = "SELECT result_attempt FROM subtasks WHERE task_id = ? AND idx = 0"
        assert _db(store).execute(recorded_by, (task.id,)).fetchone()[0] == 1
        assert [r.message for r in store.logs.lines(task.id)] == ["hi"]
        # and takes new results, once each
        assert record_result(store, task.id, 1, 1, "b", finished_at=4.0) is True
        assert record_result(store, task.id, 1, 2, "again", finished_at=5.0) is False
    finally:
        store.close()


@pytest.mark.parametrize(
    ("statement", "bad"),
    [
        ("UPDATE tasks SET state = ? WHERE id = ?", "done"),
        ("UPDATE subtasks SET state = ? WHERE task_id = ?", "done"),
        ("UPDATE tasks SET state = ? WHERE id = ?", None),
    ],
)
def test_sqlite_schema_refuses_a_state_it_does_not_know(
    migrated: SqliteStore, statement: str, bad: str | None
) -> None:
    task = started(migrated, parts=1)
    with pytest.raises(sqlite3.IntegrityError, match=r"CHECK|NOT NULL"):
        _db(migrated).execute(statement, (bad, task.id))
    # every state the code writes is taken
    for state in TaskState:
        _db(migrated).execute("UPDATE tasks SET state = ? WHERE id = ?", (state.value, task.id))
    for sub_state in SubtaskState:
        _db(migrated).execute(
            "UPDATE subtasks SET state = ? WHERE task_id = ?", (sub_state.value, task.id)
        )


def test_sqlite_queries_by_state_walk_the_partial_indexes(migrated: SqliteStore) -> None:
    # 0007: the state index holds open and failed-like tasks only. A query uses a partial index
    # only when its WHERE implies the index's: these plans fail if a query or an index is
    # written so that it does not (an IN list, say), and each would scan the whole table.
    def plan(name: str, **params: object) -> str:
        query = migrated._driver.queries[name]
        rows = _db(migrated).execute("EXPLAIN QUERY PLAN " + query, params).fetchall()
        return " | ".join(str(row[3]) for row in rows)

    assert "tasks_open_state_seq" in plan("count_unfinished")
    assert "tasks_open_state_seq" in plan("unfinished_tasks")
    page = {"before": 10, "limit": 5}
    assert "tasks_open_state_seq" in plan("list_tasks_by_state", state="running", **page)
    assert "tasks_failed_state_seq" in plan("list_tasks_by_state", state="failed", **page)
    assert "PRIMARY KEY" in plan("list_tasks_by_state", state="succeeded", **page)
    assert "SCAN" not in plan("list_tasks_by_state", state="succeeded", **page)
    # and they answer as before, whichever way they go
    tasks = [new_task(state=s) for s in (TaskState.SUCCEEDED, TaskState.FAILED,
                                         TaskState.RUNNING, TaskState.SUCCEEDED)]
    migrated.insert_tasks(tasks)
    assert migrated.count_unfinished() == 1
    assert [t.id for t in migrated.unfinished_tasks()] == [tasks[2].id]
    by_state = {
        state: [t.id for t in migrated.list_tasks(state=state)[0]]
        for state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.RUNNING)
    }
    assert by_state == {
        TaskState.SUCCEEDED: [tasks[3].id, tasks[0].id],
        TaskState.FAILED: [tasks[1].id],
        TaskState.RUNNING: [tasks[2].id],
    }


def test_sqlite_subtasks_still_need_their_task(migrated: SqliteStore) -> None:
    # 0005 rebuilt both tables: the foreign key must point at the new tasks table
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        _db(migrated).execute(
            "INSERT INTO subtasks (task_id, idx, part, state) VALUES ('nobody', 0, '1', "
            "'queued')"
        )


def test_sqlite_checkpoints_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"
    store = SqliteStore(str(path))
    try:
        store.migrate()
        assert any(t.name == "herder-checkpoint" for t in threading.enumerate())
        tasks = [new_task() for _ in range(200)]
        store.insert_tasks(tasks)

        def in_the_database_file() -> int:
            # immutable=1 reads the database file alone, without its WAL: rows are there only
            # once a checkpoint copied them
            db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
            try:
                return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])
            except sqlite3.OperationalError:  # not even the schema copied yet
                return 0
            finally:
                db.close()

        deadline = time.monotonic() + 10
        while in_the_database_file() < 200:
            assert time.monotonic() < deadline, "no checkpoint copied the rows"
            time.sleep(0.05)
    finally:
        store.close()
    assert not any(t.name == "herder-checkpoint" for t in threading.enumerate())
    assert not (tmp_path / "ckpt.db-wal").exists()  # the last close checkpointed the rest
