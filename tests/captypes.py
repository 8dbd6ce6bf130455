"""Task types for the tests of concurrency caps and labels: each subtask sleeps and returns when
it ran, so that a test can tell how many ran at once. Imported by the workers with --tasks."""

from __future__ import annotations

import time

import pydantic

from herder import Context, TaskType


class NapParams(pydantic.BaseModel):
    parts: int = 1
    seconds: float = 0.0


class Nap(TaskType):
    """Each subtask sleeps `seconds`; its result is [start, end] in wall-clock seconds."""

    name = "nap"
    Params = NapParams

    def split(self, params: NapParams) -> list[float]:
        return [params.seconds] * params.parts

    def execute(self, ctx: Context, part: float) -> list[float]:
        started = time.time()
        ctx.sleep(float(part))
        return [started, time.time()]


class CappedNap(Nap):
    """A nap of which at most two subtasks run at once, across the cluster."""

    name = "cappednap"
    max_running = 2


class GpuNap(Nap):
    """A nap that only workers started with `--label gpu` run."""

    name = "gpunap"
    labels = frozenset({"gpu"})


def most_at_once(intervals: list[list[float]]) -> int:
    """The most of these [start, end] intervals that overlap at any moment."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = running = 0
    for _, change in edges:  # at a tie an end sorts first: touching intervals do not overlap
        running += change
        most = max(most, running)
    return most
