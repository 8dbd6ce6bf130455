"""Task types for the size and count limits: parts and results of a given size, and a split that
runs away. Name it with `--tasks tests.limittypes`. Imports only `herder` and pydantic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pydantic

from herder.context import Context
from herder.tasktype import TaskType


class SizedParams(pydantic.BaseModel):
    part: int = pydantic.Field(default=0, ge=0)
    result: int = pydantic.Field(default=0, ge=0)
    parts: int = pydantic.Field(default=1, ge=1)


class Sized(TaskType):
    """`parts` subtasks, each with a part of `part` bytes, each returning `result` bytes."""

    name = "sized"
    Params = SizedParams

    def split(self, params: SizedParams) -> list[Any]:
        return [{"pad": "p" * params.part, "result": params.result}] * params.parts

    def execute(self, ctx: Context, part: Any) -> str:
        return "r" * int(part["result"])

    def aggregate(self, params: SizedParams, results: list[Any]) -> int:
        return sum(len(r) for r in results)


class Runaway(TaskType):
    """A split that never ends."""

    name = "runaway"

    def split(self, params: Any) -> Iterator[int]:
        return itertools.count()

    def execute(self, ctx: Context, part: Any) -> Any:
        return part
