"""Task types used by the tests: failures, stubborn and crashing code, logs, bad results.

Importable as `tests.tasktypes` with the repository root on sys.path; name it with
`--tasks tests.tasktypes` on the master and the workers. Imports only `herder` and pydantic.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pydantic

from herder.context import Context
from herder.tasktype import TaskType


class FailParams(pydantic.BaseModel):
    times: int = 1_000_000


class Fail(TaskType):
    """Raises on the first `times` attempts, then returns the attempt number."""

    name = "fail"
    Params = FailParams

    def split(self, params: FailParams) -> list[int]:
        return [params.times]

    def execute(self, ctx: Context, part: int) -> int:
        if ctx.attempt <= int(part):
            raise ValueError(f"boom attempt {ctx.attempt}")
        return ctx.attempt

    def aggregate(self, params: FailParams, results: list[Any]) -> Any:
        return results[0]


class StubbornParams(pydantic.BaseModel):
    seconds: float = pydantic.Field(ge=0)
    parts: int = 1


class Stubborn(TaskType):
    """Sleeps `seconds` and ignores cancellation."""

    name = "stubborn"
    Params = StubbornParams

    def split(self, params: StubbornParams) -> list[float]:
        return [params.seconds] * params.parts

    def execute(self, ctx: Context, part: float) -> str:
        ctx.progress(0.0, 1.0, "started")  # so a test can wait until it runs
        time.sleep(float(part))
        return "done"

    def aggregate(self, params: StubbornParams, results: list[Any]) -> Any:
        return results[0]


class Crash(TaskType):
    """Kills its own process (exit code 3) as soon as it runs."""

    name = "crash"

    def execute(self, ctx: Context, part: Any) -> Any:
        os._exit(3)


class Logs(TaskType):
    """Logs a few lines and reports progress, then returns its part."""

    name = "logs"

    def execute(self, ctx: Context, part: Any) -> Any:
        ctx.log.info("starting part %r", part)
        ctx.progress(1, 3, "one")
        ctx.log.warning("halfway there")
        ctx.progress(2, 3, "two")
        ctx.log.info("done")
        ctx.progress(3, 3, "three")
        return part


class EchoParams(pydantic.BaseModel):
    items: list[Any]


class Echo(TaskType):
    """One subtask per item; each returns its item; the result is the list of items."""

    name = "echo"
    Params = EchoParams

    def split(self, params: EchoParams) -> list[Any]:
        return list(params.items)

    def execute(self, ctx: Context, part: Any) -> Any:
        return part

    def aggregate(self, params: EchoParams, results: list[Any]) -> list[Any]:
        return results


class SlowAggregateParams(pydantic.BaseModel):
    seconds: float = pydantic.Field(ge=0)


class SlowAggregate(TaskType):
    """One no-op subtask, then an aggregate that takes `seconds`."""

    name = "slowaggregate"
    Params = SlowAggregateParams

    def split(self, params: SlowAggregateParams) -> list[None]:
        return [None]

    def execute(self, ctx: Context, part: Any) -> None:
        return None

    def aggregate(self, params: SlowAggregateParams, results: list[Any]) -> str:
        time.sleep(params.seconds)
        return "aggregated"


class BadResult(TaskType):
    """Returns something that is not JSON."""

    name = "badresult"

    def execute(self, ctx: Context, part: Any) -> Any:
        return object()


class SpreadParams(pydantic.BaseModel):
    parts: int = 1
    seconds: float = 0.0


class WhoAmI(TaskType):
    """Each subtask sleeps `seconds` and returns the pid of the process that ran it."""

    name = "whoami"
    Params = SpreadParams

    def split(self, params: SpreadParams) -> list[float]:
        return [params.seconds] * params.parts

    def execute(self, ctx: Context, part: float) -> int:
        ctx.sleep(float(part))
        return os.getpid()


class Stamp(TaskType):
    """Returns the wall-clock time at which its one subtask ran (to observe dispatch order)."""

    name = "stamp"

    def execute(self, ctx: Context, part: Any) -> float:
        return time.time()

    def aggregate(self, params: Any, results: list[Any]) -> Any:
        return results[0]


class BadCodeParams(pydantic.BaseModel):
    where: str = "split"


class BadCode(TaskType):
    """Raises RuntimeError in `split` or in `aggregate`, as `where` says."""

    name = "badcode"
    Params = BadCodeParams

    def split(self, params: BadCodeParams) -> list[int]:
        if params.where == "split":
            raise RuntimeError("bad split")
        return [1]

    def execute(self, ctx: Context, part: Any) -> Any:
        return part

    def aggregate(self, params: BadCodeParams, results: list[Any]) -> Any:
        raise RuntimeError("bad aggregate")


class StdLog(TaskType):
    """Logs through the standard `logging` module (a named logger, the root, an exception, a
    DEBUG line, another thread) and once through ctx.log; returns its part."""

    name = "stdlog"

    def execute(self, ctx: Context, part: Any) -> Any:
        import logging
        import threading

        logger = logging.getLogger("tests.tasktypes.stdlog")
        logger.info("named info %s", part)
        logging.warning("root warning")
        logger.debug("debug line")
        ctx.log.info("via ctx")
        other = threading.Thread(target=logger.warning, args=("from another thread",))
        other.start()
        other.join()
        try:
            raise ValueError("bad value")
        except ValueError:
            logger.exception("caught it")
        return part


class Prints(TaskType):
    """Prints to stdout and stderr (whole lines, pieces, an unfinished last line), and from
    another thread; returns its part."""

    name = "prints"

    def execute(self, ctx: Context, part: Any) -> Any:
        import sys
        import threading

        print("out one")
        print("err one", file=sys.stderr)
        sys.stdout.write("out two\nout ")
        sys.stdout.flush()
        sys.stdout.write("three\n")
        other = threading.Thread(target=print, args=(f"other thread {part}",))
        other.start()
        other.join()
        sys.stdout.write("unfinished")
        return part


class UnevenParams(pydantic.BaseModel):
    seconds: list[float]


class Uneven(TaskType):
    """One subtask per entry of `seconds`, each sleeping that long (cancellable): run times that
    depend on the params, which the master cannot know from the type's average."""

    name = "uneven"
    Params = UnevenParams

    def split(self, params: UnevenParams) -> list[float]:
        return list(params.seconds)

    def execute(self, ctx: Context, part: float) -> float:
        ctx.sleep(float(part))
        return part

    def aggregate(self, params: UnevenParams, results: list[Any]) -> int:
        return len(results)


class GatedParams(pydantic.BaseModel):
    gate: str  # a file's path: each part runs until it exists
    parts: int = 1


class Gated(TaskType):
    """Each part says it started, then waits (up to a minute) for the file `gate`, and returns
    the name of the worker that ran it: a test decides when its parts end."""

    name = "gated"
    Params = GatedParams

    def split(self, params: GatedParams) -> list[str]:
        return [params.gate] * params.parts

    def execute(self, ctx: Context, part: str) -> str:
        ctx.progress(0.0, 1.0, "started")
        ctx.log.info("waiting at the gate")
        deadline = time.monotonic() + 60
        while not os.path.exists(part) and time.monotonic() < deadline:
            ctx.sleep(0.01)
        return f"ran {ctx.subtask_index}"

    def aggregate(self, params: GatedParams, results: list[Any]) -> list[Any]:
        return results
