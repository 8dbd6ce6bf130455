"""A task type's max_running and labels are checked when the type is loaded."""

from __future__ import annotations

import pytest

from herder.errors import TaskTypeError
from herder.tasktype import Registry, TaskType


@pytest.mark.parametrize("cap", [0, -1, 2.5])
def test_a_type_with_a_bad_max_running_is_refused_when_loaded(cap: object) -> None:
    class Bad(TaskType):
        name = "bad"
        max_running = cap  # type: ignore[assignment]

    with pytest.raises(TaskTypeError, match="max_running must be at least 1"):
        Registry([Bad])


def test_labels_given_as_one_string_are_refused() -> None:
    class Bad(TaskType):
        name = "bad"
        labels = "gpu"

    with pytest.raises(TaskTypeError, match="labels must be a set of strings"):
        Registry([Bad])
