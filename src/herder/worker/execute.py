"""Run one attempt synchronously: build `ctx`, call `execute`, turn what happened into an outcome.

The same code runs in a pool thread and in a slot's child process, so it knows nothing of threads,
pipes or the event loop: it gets a cancel flag and an `Emitter` and returns a `Finished`.
While `execute` runs, the thread's `logging` records and (if installed) output lines are routed to
the attempt by `worker.capture`. Imports `context`, `tasktype`, `protocol.frames`,
`worker.capture` and the stdlib; no I/O of its own.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import traceback
from typing import Any, Protocol

import msgpack
from pydantic_core import to_jsonable_python

from herder import jsontext
from herder.context import CancelFlag, Context
from herder.protocol.frames import MAX_LOG_MESSAGE, MAX_VALUE_BYTES, Outcome
from herder.tasktype import Registry
from herder.worker import capture

#: at most one progress report per attempt in this many seconds (the last one is always sent)
PROGRESS_INTERVAL = 0.05
#: tracebacks are cut to their last this many characters (the end names the failing line)
MAX_TRACEBACK = 64 * 1024

AttemptKey = tuple[str, int, int]
"""(task_id, index, attempt): names one attempt; `attempt` is the fencing token."""


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One attempt to run: what the master assigned, with its deadline made absolute."""

    task_id: str
    index: int
    attempt: int
    type: str
    part: Any = None
    #: wall-clock time (`time.time()`) after which the attempt times out, or None
    deadline: float | None = None

    @property
    def key(self) -> AttemptKey:
        return (self.task_id, self.index, self.attempt)


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """How an attempt ended; becomes a ResultFrame."""

    key: AttemptKey
    outcome: Outcome
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    duration: float = 0.0


class Emitter(Protocol):
    """Where a running attempt's progress and log lines go."""

    def progress(self, done: float, total: float | None, message: str | None) -> None: ...

    def log(self, ts: float, level: str, message: str) -> None: ...


Progress = tuple[float, float | None, str | None]


class Throttle:
    """Keeps progress reports to one per `interval`; remembers the latest one held back."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self._interval = interval
        self._last = -math.inf
        self._held: Progress | None = None

    def offer(self, now: float, value: Progress) -> Progress | None:
        """The report to send now, or None if it is held back until later."""
        if now - self._last >= self._interval:
            self._last = now
            self._held = None
            return value
        self._held = value
        return None

    def flush(self) -> Progress | None:
        """The report held back, if any (sent before the result, so the last one is never lost)."""
        held, self._held = self._held, None
        return held


_formatter = logging.Formatter("%(message)s")


def format_record(record: logging.LogRecord) -> str:
    """The record's message (with its exception, if any), cut to what a log frame may carry."""
    try:
        text = _formatter.format(record)
    except Exception as exc:  # a bad format string in task code must not lose the line
        text = f"{record.msg!r} (cannot format: {exc})"
    return truncate(text, MAX_LOG_MESSAGE)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 20] + " ...[truncated]"


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return "[truncated]...\n" + text[-(limit - 20) :]


def describe_exception(exc: BaseException) -> tuple[str, str]:
    """(`ExcType: message`, traceback) for a result frame."""
    message = truncate(f"{type(exc).__name__}: {exc}", MAX_LOG_MESSAGE)
    tb = "".join(traceback.format_exception(exc))
    return message, _tail(tb, MAX_TRACEBACK)


#: the ints MessagePack can carry (a larger one is refused below, as any value it cannot pack)
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1
#: an ASCII text shorter than this fits in a frame (one byte a character)
_SHORT_TEXT = MAX_VALUE_BYTES - 8


def check_result(value: Any) -> tuple[Outcome, Any, str | None]:
    """("ok", the value as plain JSON data, None), or ("error" or "too_large", None, why it
    cannot be sent): a result too large for any message fails its subtask without retries."""
    # Plain values known to pack are sent as they are, without the conversion and the trial
    # packing, a visible share of a no-op subtask's cost on the worker.
    kind = type(value)
    if (
        value is None
        or kind is bool
        or (kind is float and math.isfinite(value))
        or (kind is int and _MIN_INT <= value <= _MAX_INT)
        or (kind is str and len(value) < _SHORT_TEXT and value.isascii())
    ):
        return "ok", value, None
    try:
        data = to_jsonable_python(value)
        size = len(msgpack.packb(data, use_bin_type=True))
    except Exception as exc:
        return "error", None, (
            f"ResultError: the result of type {type(value).__name__} cannot be sent as JSON "
            f"({truncate(str(exc), 500)})"
        )
    if not _is_strict_json(data):
        return "error", None, (
            "ResultError: the result holds NaN or an infinity, which JSON cannot carry")
    if size > MAX_VALUE_BYTES:
        return "too_large", None, (
            f"ResultTooLarge: the result is {size} bytes packed, over the limit of "
            f"{MAX_VALUE_BYTES} bytes a result may have (see docs/limits.md)"
        )
    return "ok", data, None


class _Sinks:
    """Connects ctx's sinks to an Emitter, throttling progress at the source."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter
        self._throttle = Throttle()

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        if message is not None:
            message = truncate(str(message), MAX_LOG_MESSAGE)
        done_, total_ = float(done), _opt_float(total)
        if not math.isfinite(done_) or (total_ is not None and not math.isfinite(total_)):
            raise ValueError(f"ctx.progress: done and total must be finite, not {done!r} {total!r}")
        value = self._throttle.offer(time.monotonic(), (done_, total_, message))
        if value is not None:
            self._emitter.progress(*value)

    def log(self, record: logging.LogRecord) -> None:
        self._emitter.log(record.created, record.levelname, format_record(record))

    def line(self, ts: float, level: str, text: str) -> None:
        self._emitter.log(ts, level, truncate(text, MAX_LOG_MESSAGE))

    def flush(self) -> None:
        held = self._throttle.flush()
        if held is not None:
            self._emitter.progress(*held)


def _is_strict_json(data: Any) -> bool:
    """Whether JSON can carry `data` as it is: the master stores results as JSON, which has no
    NaN nor infinity."""
    try:
        jsontext.strict(data)
    except ValueError:
        return False
    return True


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def run_attempt(registry: Registry, job: Job, cancelled: CancelFlag, emitter: Emitter) -> Finished:
    """Run `job` to its end. Never raises: whatever the task does becomes the outcome."""
    started = time.monotonic()
    sinks = _Sinks(emitter)
    try:
        task_type = registry.instance(job.type)
        ctx = Context(
            task_id=job.task_id,
            subtask_index=job.index,
            attempt=job.attempt,
            deadline=job.deadline,
            cancelled=cancelled,
            progress_sink=sinks.progress,
            log_sink=sinks.log,
            type_name=job.type,
        )
        with capture.attempt(sinks.log, sinks.line):
            value = task_type.execute(ctx, job.part)
    except BaseException as exc:  # SystemExit in task code too: the slot must live on
        message, tb = describe_exception(exc)
        outcome: tuple[Outcome, Any, str | None, str | None] = ("error", None, message, tb)
    else:
        checked, data, problem = check_result(value)
        outcome = (checked, data, problem, None)
    try:
        sinks.flush()
    except Exception:  # the result matters more than the last progress report
        logging.getLogger(__name__).debug("could not flush progress", exc_info=True)
    return Finished(job.key, *outcome, duration=time.monotonic() - started)
