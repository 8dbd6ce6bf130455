"""The master's size and count limits checked together at start: each must leave room for the
others (docs/limits.md has them in one table). Imports `config`, `errors` and `protocol.frames`.
"""

from __future__ import annotations

from herder.config import MasterSettings
from herder.errors import HerderError
from herder.protocol.frames import MAX_VALUE_BYTES


def limits_problems(settings: MasterSettings) -> list[str]:
    """What is inconsistent among the limits, one sentence each (none: they fit together).
    A --max-body below --max-params is not: the body then bounds the params too."""
    s = settings
    problems = []
    if s.max_params > MAX_VALUE_BYTES:
        problems.append(
            f"--max-params of {s.max_params} bytes is over the {MAX_VALUE_BYTES} bytes a part "
            f"may have in a worker-channel message: such params could not be dispatched"
        )
    if s.max_subtasks_per_task > s.max_pending_subtasks:
        problems.append(
            f"--max-subtasks-per-task of {s.max_subtasks_per_task} is over "
            f"--max-pending-subtasks of {s.max_pending_subtasks}: a task that large could "
            f"never be admitted"
        )
    return problems


def check_limits(settings: MasterSettings) -> None:
    """Raise HerderError naming every limit that does not fit with the others."""
    problems = limits_problems(settings)
    if problems:
        raise HerderError("inconsistent limits: " + "; ".join(problems))
