"""`ctx`, what a running subtask sees of the world (DESIGN.md step 6).

Pure: the worker hands in the cancellation flag and two sinks (progress, log); this module does no
I/O of its own. Imports only the stdlib.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol


class CancelFlag(Protocol):
    """What `threading.Event` and `multiprocessing.Event` have in common."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


ProgressSink = Callable[[float, float | None, str | None], None]
LogSink = Callable[[logging.LogRecord], None]


class _SinkHandler(logging.Handler):
    def __init__(self, sink: LogSink) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._sink(record)
        except Exception:  # a broken sink must not break the task's own code
            self.handleError(record)


class Context:
    """Passed to `TaskType.execute(ctx, part)`."""

    def __init__(
        self,
        *,
        task_id: str,
        subtask_index: int,
        attempt: int,
        deadline: float | None,
        cancelled: CancelFlag,
        progress_sink: ProgressSink,
        log_sink: LogSink,
        type_name: str = "task",
    ) -> None:
        self.task_id = task_id
        self.subtask_index = subtask_index
        self.attempt = attempt
        #: wall-clock time (`time.time()`) after which the work is no longer wanted, or None
        self.deadline = deadline
        #: set when the task is cancelled or its deadline passed; check it and return early
        self.cancelled = cancelled
        self._progress_sink = progress_sink
        self._log_sink = log_sink
        self._type_name = type_name
        self._log: logging.Logger | None = None

    @property
    def log(self) -> logging.Logger:
        """A `logging.Logger` whose records go to the master as this subtask's log lines."""
        if self._log is None:
            # Made on first use: most subtasks never log, and a handler costs two passes
            # through logging's module lock (made, then collected). Made directly, not through
            # logging.getLogger, so that one per attempt does not pile up in logging's registry.
            self._log = logging.Logger(f"herder.task.{self._type_name}", logging.DEBUG)
            self._log.propagate = False
            self._log.addHandler(_SinkHandler(self._log_sink))
        return self._log

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report how far this subtask is: `done` of `total` (or a fraction in [0, 1] alone)."""
        self._progress_sink(done, total, message)

    @property
    def remaining(self) -> float | None:
        """Seconds until the deadline, or None without one."""
        return None if self.deadline is None else self.deadline - time.time()

    def sleep(self, seconds: float, tick: float = 0.05) -> bool:
        """Sleep up to `seconds`, waking every `tick` to honour cancellation. True if cancelled."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return self.cancelled.is_set()
            if self.cancelled.wait(min(tick, left)):
                return True
