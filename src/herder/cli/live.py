"""Following one task live, for `herder watch` and `submit --watch`.

`TaskView` is what is known of the task: fed the task's Server-Sent Events (or, when the stream
cannot be opened, polled task JSON and log pages), with the time passed in; it does no I/O.
Two displays draw it: `RichDisplay`, a progress bar with the counts, elapsed time and ETA over the
latest log lines, redrawn four times a second; and `PlainDisplay`, for pipes and `--plain`: at
most one progress line a second, each log line as it comes, and the final state. `follow` wires
them to a `TaskHandle`.

Imports `client`, rich and the CLI's `fmt` and `options`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from herder.cli import fmt
from herder.cli.options import err
from herder.client import Event, StreamUnavailable, TaskHandle, is_final

LOG_LINES = 8
PLAIN_INTERVAL = 1.0  # seconds between two plain progress lines, at least
POLL_FIRST, POLL_CAP = 0.05, 0.5  # the polling fallback's interval grows from 50 to 500 ms

Record = Mapping[str, Any]


class TaskView:
    """The followed task: its JSON (a snapshot or a poll, kept current by `progress` and
    `state` events), its latest log lines, and when its ETA was last heard (so that the ETA
    counts down between updates)."""

    def __init__(self, task: Mapping[str, Any], now: float, lines: int = LOG_LINES) -> None:
        self.task = dict(task)
        self.logs: deque[Record] = deque(maxlen=lines)
        self.log_since = 0  # the highest log seq seen: the polling fallback reads on from here
        self._eta_at = now

    def apply(self, event: Event, now: float) -> list[Record]:
        """Take in one event; return the log records it brought."""
        if event.kind == "snapshot":
            self.set_task(event.data, now)
        elif event.kind == "progress":
            for key in ("state", "progress", "eta_seconds"):
                if key in event.data:
                    self.task[key] = event.data[key]
            self._eta_at = now
        elif event.kind == "state" and "state" in event.data:
            self.task["state"] = event.data["state"]
        elif event.kind == "log":
            return self.add_logs([event.data])
        return []

    def set_task(self, task: Mapping[str, Any], now: float) -> None:
        self.task = dict(task)
        self._eta_at = now

    def add_logs(self, records: Sequence[Record]) -> list[Record]:
        fresh = [r for r in records if int(r.get("seq") or 0) > self.log_since]
        for record in fresh:
            self.logs.append(record)
            self.log_since = max(self.log_since, int(record.get("seq") or 0))
        return fresh

    @property
    def state(self) -> str:
        return str(self.task.get("state"))

    @property
    def finished(self) -> bool:
        return self.state in fmt.FINAL

    def fraction(self) -> float:
        if self.state == "succeeded":
            return 1.0
        return float((self.task.get("progress") or {}).get("fraction") or 0.0)

    def eta(self, now: float) -> float | None:
        """The master's estimate, less the time since it was given; None when there is none."""
        eta = self.task.get("eta_seconds")
        if self.finished or not isinstance(eta, int | float):
            return None
        return max(0.0, eta - (now - self._eta_at))

    def elapsed(self, now: float) -> float:
        """Seconds since the task started (to its end once it has finished)."""
        started = self.task.get("started_at")
        if not isinstance(started, int | float):
            return 0.0
        end = self.task.get("finished_at")
        return max(0.0, (end if isinstance(end, int | float) else now) - started)


class Display(Protocol):
    #: held while the view changes, and while it is drawn from another thread
    lock: threading.Lock

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def changed(self, view: TaskView, new_logs: list[Record], now: float) -> None: ...

    def finished(self, view: TaskView, now: float) -> None: ...


class PlainDisplay:
    """Lines for a pipe or a log file: progress at most once per `interval` seconds (and only
    when it moved), each log line as it arrives, and the final state."""

    def __init__(self, write: Callable[[str], None], interval: float = PLAIN_INTERVAL) -> None:
        self.lock = threading.Lock()
        self._write = write
        self._interval = interval
        self._last_at: float | None = None
        self._last_key: tuple[Any, ...] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def changed(self, view: TaskView, new_logs: list[Record], now: float) -> None:
        for record in new_logs:
            self._write(fmt.log_text(record))
        if view.finished:
            return  # `finished` says the last word
        key = (fmt.pct(view.fraction()), *fmt.counts(view.task), view.state)
        if key == self._last_key:
            return
        if self._last_at is not None and now - self._last_at < self._interval:
            return
        self._last_at, self._last_key = now, key
        self._write(fmt.progress_line(view.fraction(), view.task, view.eta(now)))

    def finished(self, view: TaskView, now: float) -> None:
        self._write(f"{view.state}: {fmt.progress_line(view.fraction(), view.task, None)}, "
                    f"took {fmt.fmt_elapsed(view.elapsed(now))}")


def render(view: TaskView, now: float) -> RenderableType:
    """The rich display: name, bar, percent, counts, elapsed and ETA; the latest log lines."""
    done, total, running, failed = fmt.counts(view.task)
    state = view.state
    head = Table.grid(padding=(0, 1))
    head.add_row(
        Text(f"{view.task.get('type', 'task')} {str(view.task.get('id', ''))[:12]}",
             style="bold"),
        ProgressBar(total=1.0, completed=view.fraction(), width=30,
                    finished_style="red" if state in ("failed", "timed_out") else "green"),
        Text(f"{fmt.pct(view.fraction()):>4}"),
        Text.from_markup(f"{done}/{total} done · {running} running · "
                         + (f"[red]{failed} failed[/]" if failed else "0 failed")),
        Text(f"{fmt.fmt_elapsed(view.elapsed(now))} elapsed"
             + ("" if (eta := view.eta(now)) is None else f" · eta {fmt.fmt_eta(eta)}")),
        Text.from_markup(fmt.styled_state(state)),
    )
    lines = Table.grid(padding=(0, 1))
    lines.add_column(style="dim", no_wrap=True)
    lines.add_column(no_wrap=True, width=7)
    lines.add_column(style="dim", no_wrap=True)
    lines.add_column(overflow="ellipsis", no_wrap=True)
    for record in list(view.logs):
        level = str(record.get("level") or "").upper()
        subtask = record.get("subtask")
        lines.add_row(fmt.fmt_clock(record.get("ts")),
                      Text(level, style=fmt.LEVEL_STYLE.get(level, "")),
                      "" if subtask is None else f"#{subtask}",
                      Text(str(record.get("message")), style="yellow" if fmt.is_marker(record)
                           else ""))
    return Group(head, lines) if view.logs else head


class RichDisplay:
    """`render` in a rich Live region, redrawn 4 times a second (so that elapsed time and ETA
    move between events too); left on screen at the end."""

    def __init__(self, console: Console, view: TaskView) -> None:
        self.lock = threading.Lock()
        self._view = view
        self._live = Live(console=console, get_renderable=self._draw, refresh_per_second=4,
                          transient=False)

    def _draw(self) -> RenderableType:
        with self.lock:
            return render(self._view, time.time())

    def __enter__(self) -> Self:
        self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._live.stop()

    def changed(self, view: TaskView, new_logs: list[Record], now: float) -> None:
        self._live.refresh()

    def finished(self, view: TaskView, now: float) -> None:
        self._live.refresh()


def follow(
    handle: TaskHandle, console: Console = err, plain: bool | None = None
) -> Mapping[str, Any]:
    """Show the task live until it has finished; return its final JSON.

    `plain` (default: when `console` is not a terminal) prints lines instead of redrawing.
    The task's event stream drives the display; if the master will not open it, polling does.
    """
    if plain is None:
        plain = not console.is_terminal
    view = TaskView(handle.task or handle.status(), time.time())
    display: Display = (
        PlainDisplay(lambda line: console.print(line, markup=False, highlight=False)) if plain
        else RichDisplay(console, view)
    )
    with display:
        try:
            _stream(handle, view, display)
        except StreamUnavailable:
            _poll(handle, view, display)
        task = handle.status()  # the whole final JSON: events carry no result or error
        with display.lock:
            view.set_task(task, time.time())
        display.finished(view, time.time())
    return task


def _stream(handle: TaskHandle, view: TaskView, display: Display) -> None:
    for event in handle.events():
        now = time.time()
        with display.lock:
            new_logs = view.apply(event, now)
        display.changed(view, new_logs, now)


def _poll(handle: TaskHandle, view: TaskView, display: Display) -> None:
    interval = POLL_FIRST
    while True:
        # The state before the logs: the lines logged before the end are then all read.
        task = handle.status()
        records = handle.logs(view.log_since)
        now = time.time()
        with display.lock:
            view.set_task(task, now)
            new_logs = view.add_logs(records)
        display.changed(view, new_logs, now)
        if is_final(task):
            return
        time.sleep(interval)
        interval = min(POLL_CAP, interval * 1.5)
