"""A task type that reports the interpreter settings of the processes that run it: its subtask
runs on a worker, its aggregate on the master.

Importable as `tests.processtypes` with the repository root on sys.path.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from herder.context import Context
from herder.tasktype import TaskType


def interpreter_settings() -> dict[str, Any]:
    return {
        "switch_interval": sys.getswitchinterval(),
        "gc_threshold": list(gc.get_threshold()),
        "gc_frozen": gc.get_freeze_count(),
    }


class ProcessSettings(TaskType):
    name = "process_settings"

    def execute(self, ctx: Context, part: Any) -> dict[str, Any]:
        return interpreter_settings()

    def aggregate(self, params: Any, results: list[Any]) -> dict[str, Any]:
        return {"master": interpreter_settings(), "worker": results[0]}
