"""`noop` and `sleep`: the smallest task types, for trying herder and measuring its overhead."""

from __future__ import annotations

from typing import Any

import pydantic

from herder.context import Context
from herder.tasktype import TaskType


class NoopParams(pydantic.BaseModel):
    value: Any = None


class Noop(TaskType):
    """One subtask that returns `value` unchanged."""

    name = "noop"
    Params = NoopParams

    def split(self, params: NoopParams) -> list[Any]:
        return [params.value]

    def execute(self, ctx: Context, part: Any) -> Any:
        return part

    def aggregate(self, params: NoopParams, results: list[Any]) -> Any:
        return results[0]


class SleepParams(pydantic.BaseModel):
    seconds: float = pydantic.Field(ge=0, le=86400)
    parts: int = pydantic.Field(default=1, ge=1, le=100_000)


class Sleep(TaskType):
    """`parts` subtasks that each sleep `seconds`, honouring cancellation every 50 ms."""

    name = "sleep"
    Params = SleepParams

    def split(self, params: SleepParams) -> list[float]:
        return [params.seconds] * params.parts

    def execute(self, ctx: Context, part: float) -> None:
        seconds = float(part)
        steps = max(1, int(seconds / 0.05))
        for step in range(steps):
            if ctx.sleep(seconds / steps):
                return
            ctx.progress(step + 1, steps)

    def aggregate(self, params: SleepParams, results: list[Any]) -> int:
        return len(results)
