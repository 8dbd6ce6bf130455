"""Capture what a running attempt says outside `ctx.log`: records of the standard `logging`
module and, with `--capture-output`, what it writes to sys.stdout / sys.stderr.

Both are process-wide things (the root logger, `sys.stdout`), shared by every slot of a thread
pool, so routing goes by *who is writing*: `attempt(...)` marks the current thread (through a
ContextVar, so asyncio tasks started inside `execute` count too, other threads do not) as running
one attempt, and the root handler and the stream proxies look that mark up. Writes and records
from anywhere else are left alone: records go on to the other root handlers, writes to the real
stream.

The rule for `logging` records (what reaches the master):
  - records at INFO and above from any logger that propagates to the root, emitted by the thread
    running the attempt (or a task of an asyncio loop it runs); DEBUG records only where a logger
    lets them through (`logging.getLogger("mine").setLevel(logging.DEBUG)`, or a worker started
    with `--log-level debug`);
  - to make INFO pass, `install` lowers the root logger to INFO when it is set higher, and gives
    the root handlers already there (the worker's console) the old root level as their own, so
    the worker's own output stays as quiet as its `--log-level` asks;
  - `ctx.log` does not propagate to the root, so its records are sent once, by their own handler.

Output is line-buffered: one record per line (stdout as INFO, stderr as WARNING), a partial line
is sent when the attempt ends, and a line longer than a log frame allows is sent in pieces. Only
Python-level writes are seen; what C code or a subprocess writes to the file descriptors is not.

Imports `protocol.frames` (for the size limit) and the stdlib.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from herder.protocol.frames import MAX_LOG_MESSAGE

#: levels of captured output lines
STDOUT_LEVEL = "INFO"
STDERR_LEVEL = "WARNING"
#: the root logger is lowered to this level (never raised) while capture is installed
ROOT_LEVEL = logging.INFO

RecordSink = Callable[[logging.LogRecord], None]
LineSink = Callable[[float, str, str], None]  # (ts, level, text)


@dataclass(eq=False)
class _Attempt:
    """What the thread running one attempt sends its records and lines to."""

    on_record: RecordSink
    on_line: LineSink
    partial: dict[str, list[str]] = field(default_factory=dict)
    #: set while sending, so that whatever the sending itself logs or prints is not captured
    #: again (that would recurse)
    busy: bool = False

    def record(self, record: logging.LogRecord) -> None:
        with self._sending():
            self.on_record(record)

    def write(self, level: str, text: str) -> None:
        parts = self.partial.setdefault(level, [])
        lines = text.split("\n")
        parts.append(lines[0])
        with self._sending():
            if len(lines) > 1:
                self._line(level, "".join(parts))
                for line in lines[1:-1]:
                    self._line(level, line)
                parts[:] = [lines[-1]] if lines[-1] else []
            elif sum(map(len, parts)) >= MAX_LOG_MESSAGE:
                self._line(level, "".join(parts))
                parts.clear()

    def flush_partial(self) -> None:
        if not self.partial:  # nothing was written (most attempts)
            return
        with self._sending():
            for level, parts in self.partial.items():
                if text := "".join(parts):
                    self._line(level, text)
                parts.clear()

    def _line(self, level: str, text: str) -> None:
        ts = time.time()
        for start in range(0, max(len(text), 1), MAX_LOG_MESSAGE):
            self.on_line(ts, level, text[start : start + MAX_LOG_MESSAGE])

    @contextlib.contextmanager
    def _sending(self) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False


_current: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "herder_current_attempt", default=None
)


def _receiver() -> _Attempt | None:
    """The attempt the caller's thread runs, unless it is busy sending already."""
    att = _current.get()
    return None if att is None or att.busy else att


class attempt:  # lower case: used like the function it was, `with capture.attempt(...)`
    """Route the calling thread's logging records and output lines to these sinks until exit;
    a partial output line is sent on exit.

    A class rather than a @contextmanager: it runs around every attempt, and a generator-based
    one costs about twice as much per use."""

    __slots__ = ("_att", "_token")

    def __init__(self, on_record: RecordSink, on_line: LineSink) -> None:
        self._att = _Attempt(on_record, on_line)

    def __enter__(self) -> None:
        self._token = _current.set(self._att)

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)
        self._att.flush_partial()


class AttemptLogHandler(logging.Handler):
    """On the root logger: hands records of a thread that runs an attempt to that attempt."""

    def emit(self, record: logging.LogRecord) -> None:
        att = _receiver()
        if att is None:
            return
        try:
            att.record(record)
        except Exception:
            self.handleError(record)


class StreamProxy:
    """Stands in for sys.stdout or sys.stderr: an attempt's writes become lines at `level`,
    everybody else's go to the real stream."""

    def __init__(self, real: TextIO, level: str) -> None:
        self.real = real
        self.level = level

    def write(self, text: str) -> int:
        att = _receiver()
        if att is None:
            return self.real.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        att.write(self.level, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        # An attempt's partial line waits for its newline (or the attempt's end).
        if _receiver() is None:
            self.real.flush()

    def isatty(self) -> bool:
        return False if _receiver() is not None else self.real.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _Installed:
    """What `install` changed, to put back at the last `uninstall`."""

    def __init__(self) -> None:
        self.handler = AttemptLogHandler(logging.NOTSET)
        self.root_level = logging.NOTSET
        self.handler_levels: list[tuple[logging.Handler, int]] = []
        self.users = 0
        self.output_users = 0
        self.streams: list[tuple[str, StreamProxy]] = []


_lock = threading.Lock()
_state = _Installed()


def install(output: bool) -> None:
    """Capture logging records of attempts in this process; their stdout/stderr too if `output`.
    Counted: each call needs its `uninstall(output)`."""
    with _lock:
        if _state.users == 0:
            _install_logging()
        _state.users += 1
        if output:
            if _state.output_users == 0:
                _install_streams()
            _state.output_users += 1


def uninstall(output: bool) -> None:
    with _lock:
        if output and _state.output_users > 0:
            _state.output_users -= 1
            if _state.output_users == 0:
                _uninstall_streams()
        if _state.users > 0:
            _state.users -= 1
            if _state.users == 0:
                _uninstall_logging()


def installed() -> tuple[bool, bool]:
    """(logging captured, output captured) in this process."""
    return _state.users > 0, _state.output_users > 0


def _install_logging() -> None:
    root = logging.getLogger()
    _state.root_level = root.level
    _state.handler_levels = []
    if root.level > ROOT_LEVEL:
        # Keep the existing handlers (the worker's console) at the level they showed so far.
        for handler in root.handlers:
            if handler.level < root.level:
                _state.handler_levels.append((handler, handler.level))
                handler.setLevel(root.level)
        root.setLevel(ROOT_LEVEL)
    root.addHandler(_state.handler)


def _uninstall_logging() -> None:
    root = logging.getLogger()
    root.removeHandler(_state.handler)
    if root.level == ROOT_LEVEL and _state.root_level > ROOT_LEVEL:
        root.setLevel(_state.root_level)
    for handler, level in _state.handler_levels:
        handler.setLevel(level)
    _state.handler_levels = []


def _install_streams() -> None:
    for name, level in (("stdout", STDOUT_LEVEL), ("stderr", STDERR_LEVEL)):
        proxy = StreamProxy(getattr(sys, name), level)
        setattr(sys, name, cast(TextIO, proxy))
        _state.streams.append((name, proxy))


def _uninstall_streams() -> None:
    for name, proxy in _state.streams:
        # Put the real stream back only if nobody replaced ours since; else ours stays in the
        # chain, where it passes everything through once no attempt runs.
        if getattr(sys, name) is proxy:
            setattr(sys, name, proxy.real)
    _state.streams = []
