"""herder's task types for the benchmarks (load with `--tasks bench.tasks`).

`bench_noop`: one subtask that does nothing (W1, W2); `bench_noop_capped`: the same under a
max_running far above what runs (the cost of a cap that is not reached). `bench_split`: `parts`
subtasks that do nothing (W1-split, scale). `bench_cpu`: `parts` subtasks of `spin(loops)`,
summed (W3). None declares a Params model: validation is not what these measure. Imports herder
and `bench.work`.
"""

from __future__ import annotations

from typing import Any

from bench.work import spin
from herder import TaskType
from herder.context import Context


class BenchNoop(TaskType):
    name = "bench_noop"

    def split(self, params: Any) -> list[None]:
        return [None]

    def execute(self, ctx: Context, part: Any) -> None:
        return None

    def aggregate(self, params: Any, results: list[Any]) -> None:
        return None


class BenchNoopCapped(BenchNoop):
    name = "bench_noop_capped"
    max_running = 1_000_000


class BenchSplit(TaskType):
    name = "bench_split"

    def split(self, params: Any) -> list[None]:
        return [None] * int(params["parts"])

    def execute(self, ctx: Context, part: Any) -> None:
        return None

    def aggregate(self, params: Any, results: list[Any]) -> int:
        return len(results)


class BenchCpu(TaskType):
    name = "bench_cpu"
    speculative = False  # 400 equal parts: a "straggler" is only a busy core

    def split(self, params: Any) -> list[int]:
        return [int(params["loops"])] * int(params["parts"])

    def execute(self, ctx: Context, part: Any) -> int:
        return spin(int(part))

    def aggregate(self, params: Any, results: list[Any]) -> int:
        return sum(results)
