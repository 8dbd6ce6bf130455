"""Task types for the fault-injection tests and the chaos run.

- `ledger`: each execution first appends one line `task_id index attempt pid` to a ledger file
  (`params.ledger`, else the worker's env HERDER_TEST_LEDGER), so the tests count real
  executions independently of herder; then it sleeps / spins and returns `ledger_value(salt, i)`.
- `slowon`: sleeps `seconds`, or `seconds * factor` in a worker started with HERDER_TEST_SLOW=1
  (a straggler machine); `slowon_nospec` is the same with `speculative = False`.
- `flakyon`: fails in a worker started with HERDER_TEST_FAIL=1, succeeds elsewhere.
- `stubbornpid`: writes its pid to the ledger, then sleeps ignoring cancellation.

Importable as `tests.faulttypes` with the repository root on sys.path; name it with
`--tasks tests.faulttypes`. Imports only `herder` and pydantic; the helpers at the top are what
the tests use as their oracle.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pydantic

from herder.context import Context
from herder.tasktype import TaskType

LEDGER_ENV = "HERDER_TEST_LEDGER"
SLOW_ENV = "HERDER_TEST_SLOW"
FAIL_ENV = "HERDER_TEST_FAIL"
_MOD = 1_000_000_007


def ledger_value(salt: int, index: int) -> int:
    """What subtask `index` of a ledger task returns: distinct per index, so that a result put
    in the wrong place or counted twice changes the sum."""
    return (salt * 7919 + index * index * 31 + index + 1) % _MOD


def ledger_expected(salt: int, parts: int) -> dict[str, int]:
    """The result of a `ledger` task, computed without herder."""
    return {"n": parts, "sum": sum(ledger_value(salt, i) for i in range(parts))}


def append_line(path: str, line: str) -> None:
    """One write() with O_APPEND: lines from concurrent processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ledger(path: str) -> list[tuple[str, int, int, int]]:
    """(task_id, index, attempt, pid) per execution, in the order they started."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                task_id, index, attempt, pid = line.split()
                rows.append((task_id, int(index), int(attempt), int(pid)))
    except FileNotFoundError:
        pass
    return rows


def _ledger_path(explicit: str | None) -> str | None:
    return explicit or os.environ.get(LEDGER_ENV) or None


class Cancelled(RuntimeError):
    """Raised instead of returning a made-up result when the attempt is cancelled."""


class LedgerParams(pydantic.BaseModel):
    parts: int = pydantic.Field(default=1, ge=1, le=10_000)
    seconds: float = pydantic.Field(default=0.0, ge=0, le=3600)
    #: seconds of busy CPU work after the sleep
    spin: float = pydantic.Field(default=0.0, ge=0, le=60)
    salt: int = 0
    ledger: str | None = None
    #: seconds subtask 0 sleeps instead of `seconds` (a long one among short ones)
    first_seconds: float | None = pydantic.Field(default=None, ge=0, le=3600)


class Ledger(TaskType):
    name = "ledger"
    Params = LedgerParams

    def split(self, params: LedgerParams) -> list[dict[str, Any]]:
        return [
            {
                "i": i,
                "seconds": (
                    params.first_seconds
                    if i == 0 and params.first_seconds is not None
                    else params.seconds
                ),
                "spin": params.spin,
                "salt": params.salt,
                "ledger": params.ledger,
            }
            for i in range(params.parts)
        ]

    def execute(self, ctx: Context, part: dict[str, Any]) -> int:
        path = _ledger_path(part.get("ledger"))
        if path:
            append_line(path, f"{ctx.task_id} {ctx.subtask_index} {ctx.attempt} {os.getpid()}\n")
        if ctx.sleep(float(part["seconds"])):
            raise Cancelled("cancelled")
        end = time.monotonic() + float(part["spin"])
        while time.monotonic() < end:
            if ctx.cancelled.is_set():
                raise Cancelled("cancelled")
            sum(range(2000))  # CPU work, a little at a time
        return ledger_value(int(part["salt"]), int(part["i"]))

    def aggregate(self, params: LedgerParams, results: list[int]) -> dict[str, int]:
        return {"n": len(results), "sum": sum(results)}


class SlowOnParams(pydantic.BaseModel):
    parts: int = pydantic.Field(default=1, ge=1, le=10_000)
    seconds: float = pydantic.Field(default=0.5, ge=0, le=600)
    factor: float = pydantic.Field(default=10.0, ge=1, le=1000)


class SlowOn(TaskType):
    """Each subtask sleeps `seconds`, `factor` times longer on a worker with HERDER_TEST_SLOW=1;
    it returns its index (the result is [0, 1, ..., parts-1])."""

    name = "slowon"
    Params = SlowOnParams

    def split(self, params: SlowOnParams) -> list[list[float]]:
        return [[i, params.seconds, params.factor] for i in range(params.parts)]

    def execute(self, ctx: Context, part: list[float]) -> int:
        index, seconds, factor = part
        if os.environ.get(SLOW_ENV) == "1":
            seconds *= factor
        if ctx.sleep(seconds):
            raise Cancelled("cancelled")
        return int(index)


class SlowOnNoSpec(SlowOn):
    """`slowon` for a type whose `execute` must not run twice at once: no speculation."""

    name = "slowon_nospec"
    speculative = False


class FlakyOnParams(pydantic.BaseModel):
    parts: int = pydantic.Field(default=1, ge=1, le=10_000)
    seconds: float = pydantic.Field(default=0.0, ge=0, le=60)


class FlakyOn(TaskType):
    """Fails on every worker started with HERDER_TEST_FAIL=1; elsewhere returns its index.
    No retries unless the submission asks for them."""

    name = "flakyon"
    Params = FlakyOnParams
    max_retries = 0

    def split(self, params: FlakyOnParams) -> list[list[float]]:
        return [[i, params.seconds] for i in range(params.parts)]

    def execute(self, ctx: Context, part: list[float]) -> int:
        if os.environ.get(FAIL_ENV) == "1":
            raise OSError("this machine is broken")
        ctx.sleep(part[1])
        return int(part[0])


class StubbornPidParams(pydantic.BaseModel):
    seconds: float = pydantic.Field(ge=0, le=3600)
    parts: int = 1
    ledger: str | None = None


class StubbornPid(TaskType):
    """Records `task_id index attempt pid` in the ledger, then sleeps `seconds` ignoring
    cancellation, then records `task_id index -1 pid` (the end)."""

    name = "stubbornpid"
    Params = StubbornPidParams

    def split(self, params: StubbornPidParams) -> list[list[Any]]:
        return [[params.seconds, params.ledger] for _ in range(params.parts)]

    def execute(self, ctx: Context, part: list[Any]) -> str:
        path = _ledger_path(part[1])
        if path:
            append_line(path, f"{ctx.task_id} {ctx.subtask_index} {ctx.attempt} {os.getpid()}\n")
        time.sleep(float(part[0]))
        if path:
            append_line(path, f"{ctx.task_id} {ctx.subtask_index} -1 {os.getpid()}\n")
        return "done"
