"""The store's part of delayed tasks, on every backend: the state `scheduled` and `not_before`
stored and read back, counted among the unfinished tasks, and left for pending or cancelled."""

from __future__ import annotations

from herder.model import TaskState
from herder.store.base import Store
from tests.store.test_contract import new_task


def scheduled(store: Store, not_before: float = 2000.5) -> str:
    task = new_task(state=TaskState.SCHEDULED, not_before=not_before)
    assert store.insert_tasks([task]) == [True]
    return task.id


def test_a_scheduled_task_is_read_back_with_its_time(store: Store) -> None:
    task_id = scheduled(store, 2000.5)
    stored = store.get_task(task_id)
    assert stored is not None
    assert (stored.state, stored.not_before) == (TaskState.SCHEDULED, 2000.5)
    listed, _ = store.list_tasks(state=TaskState.SCHEDULED)
    assert [t.id for t in listed] == [task_id]


def test_a_task_without_a_time_has_none(store: Store) -> None:
    task = new_task()
    store.insert_tasks([task])
    stored = store.get_task(task.id)
    assert stored is not None and stored.not_before is None


def test_a_scheduled_task_is_unfinished(store: Store) -> None:
    task_id = scheduled(store)
    assert store.count_unfinished() == 1
    assert [t.id for t in store.unfinished_tasks()] == [task_id]


def test_a_scheduled_task_moves_to_pending_then_starts(store: Store) -> None:
    task_id = scheduled(store)
    store.set_task_states([(task_id, TaskState.PENDING)])
    store.start_tasks([(task_id, [1, 2], 2001.0)])
    stored = store.get_task(task_id)
    assert stored is not None
    assert (stored.state, stored.started_at, stored.not_before) == (
        TaskState.RUNNING, 2001.0, 2000.5
    )


def test_a_scheduled_task_is_not_started_without_going_pending(store: Store) -> None:
    task_id = scheduled(store)
    store.start_tasks([(task_id, [1], 2001.0)])
    stored = store.get_task(task_id)
    assert stored is not None and stored.state is TaskState.SCHEDULED
    assert store.get_subtasks(task_id) == []


def test_a_scheduled_task_can_be_cancelled(store: Store) -> None:
    task_id = scheduled(store)
    assert store.finish_tasks([(task_id, TaskState.CANCELLED, 1500.0, None, None)]) == [True]
    stored = store.get_task(task_id)
    assert stored is not None and stored.state is TaskState.CANCELLED
    assert store.count_unfinished() == 0
