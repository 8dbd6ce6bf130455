"""A task's JSON view and its event: what a client reads, with the state as plain text."""

from __future__ import annotations

import json

from herder.master.events import Event
from herder.master.live import stored_view
from herder.model import TaskRecord, TaskState


def test_a_finished_tasks_view_and_event_carry_its_state_as_plain_text() -> None:
    record = TaskRecord(id="t1", type="noop", params={"n": 1}, state=TaskState.SUCCEEDED,
                        result=[1, 2], subtasks_total=2, finished_at=5.0)
    view = stored_view(record)
    # a str, not the enum member: JSON encoders take the member ~3x slower
    assert type(view["state"]) is str and view["state"] == "succeeded"
    assert view["progress"] == {"fraction": 1.0, "subtasks_total": 2, "subtasks_done": 2,
                                "subtasks_running": 0, "subtasks_failed": 0}
    event = Event("state", "t1", {"task_id": "t1", "state": "succeeded", "task": view}, 7)
    head, data = event.sse().decode().split("data: ")
    assert head == "id: 7\nevent: state\n"
    assert json.loads(data) == {"task_id": "t1", "state": "succeeded", "task": view}
