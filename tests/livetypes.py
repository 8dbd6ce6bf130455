"""Task types for the tests of following tasks live: steady progress and many log lines.

Importable as `tests.livetypes` with the repository root on sys.path.
"""

from __future__ import annotations

from typing import Any

import pydantic

from herder.context import Context
from herder.tasktype import TaskType


class ChattyParams(pydantic.BaseModel):
    parts: int = 1
    lines: int = 10
    delay: float = 0.0


class Chatty(TaskType):
    """Each subtask logs `lines` numbered lines, `delay` seconds apart, reporting progress."""

    name = "chatty"
    Params = ChattyParams

    def split(self, params: ChattyParams) -> list[list[Any]]:
        return [[i, params.lines, params.delay] for i in range(params.parts)]

    def execute(self, ctx: Context, part: list[Any]) -> int:
        index, lines, delay = int(part[0]), int(part[1]), float(part[2])
        for n in range(lines):
            ctx.log.info("part %d line %d", index, n)
            ctx.progress(n + 1, lines, f"line {n}")
            if delay and ctx.sleep(delay):
                break
        return lines

    def aggregate(self, params: ChattyParams, results: list[int]) -> int:
        return sum(results)
