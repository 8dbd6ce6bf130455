"""Task-type code (`split`, `aggregate`) run for a task: its value goes on, its exception fails the
task with the traceback.

At once on the event loop when that kind of call is known to be quick (`CodeRunner`), else on a
thread under --split-timeout, awaited in a background step. Imports `jsontext`, `model` and the
master's `coderunner`, `background` and `live`.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Awaitable, Callable, Sized
from typing import Any

from herder import jsontext
from herder.jsontext import JSONText
from herder.master.background import Background
from herder.master.coderunner import CodeRunner
from herder.master.live import ActiveTask
from herder.model import JSON, TaskError

#: what gets a task's code's value
Done = Callable[[ActiveTask, Any], None]


class TaskCode:
    def __init__(
        self,
        runner: CodeRunner,
        fail: Callable[[str, TaskError], None],
        background: Background,
    ) -> None:
        """`fail(task_id, error)`: how a task ends when its code raised."""
        self._runner = runner
        self._fail = fail
        self._background = background
        self.runs_inline = runner.runs_inline
        self.call_inline = runner.call_inline

    def run(
        self,
        task: ActiveTask,
        where: str,
        kind: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done,
        inline: bool = True,
    ) -> None:
        """Run task-type code and hand its value to `done(task, value)`; an exception fails the
        task. At once when this kind of call is known to be quick, else on a thread, in a
        coroutine of its own (`inline` False: on a thread whatever the kind's speed)."""
        if inline and self._runner.runs_inline(kind):
            self.call_now(task, where, kind, fn, args, done)
        else:
            running = self._runner.run(fn, *args, kind=kind, inline=inline)
            self._background.spawn(self._when_done(task, where, running, done))

    def call_now(
        self,
        task: ActiveTask,
        where: str,
        kind: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done,
    ) -> None:
        """`run` for a kind the caller knows `runs_inline`: here and now."""
        try:
            value = self._runner.call_inline(kind, fn, *args)
        except Exception as exc:
            self._fail(task.id, code_error(where, exc))
            return
        done(task, value)

    async def _when_done(
        self, task: ActiveTask, where: str, running: Awaitable[Any], done: Done
    ) -> None:
        try:
            value = await running
        except Exception as exc:
            self._fail(task.id, code_error(where, exc))
            return
        done(task, value)

    def shutdown(self) -> None:
        self._runner.shutdown()


class TooManySubtasks(ValueError):
    """A split made more parts than --max-subtasks-per-task."""


def checked_parts(value: Any, most: int) -> tuple[list[JSON], list[JSONText]]:
    """A split's parts and their JSON texts, encoded one by one as they are stored (checked
    and encoded once); raises what the encoder raises for a part that is not JSON, and
    TooManySubtasks past `most` parts: a split that runs away is not read further."""
    if isinstance(value, Sized) and len(value) > most:
        raise TooManySubtasks(
            f"the split made {len(value)} subtasks, over --max-subtasks-per-task of {most}"
        )
    parts = list(itertools.islice(value, most + 1))
    if len(parts) > most:
        raise TooManySubtasks(
            f"the split made more than --max-subtasks-per-task of {most} subtasks"
        )
    return parts, [JSONText(jsontext.strict(part)) for part in parts]


def checked_split(
    split: Callable[[Any], Any], most: int
) -> Callable[[Any], tuple[list[JSON], list[JSONText]]]:
    """`split` whose parts are read, counted and encoded where it runs (on a code thread, for
    one not known to be quick): a split that runs away never holds up the event loop."""

    def split_checked(params: Any) -> tuple[list[JSON], list[JSONText]]:
        return checked_parts(split(params), most)

    return split_checked


def code_error(where: str, exc: BaseException) -> TaskError:
    tb = "".join(traceback.format_exception(exc))
    return TaskError(message=f"{where}: {type(exc).__name__}: {exc}", traceback=tb)
