"""How the CLI writes tasks, times and log records as text. Pure functions of their arguments.

Imports `protocol.answers` (the states) and the stdlib.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from herder.protocol.answers import FINAL_STATE_NAMES, TaskState

#: every task state's name, in the order a task passes them
STATES = tuple(state.value for state in TaskState)
FINAL = FINAL_STATE_NAMES
STATE_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow",
               "timed_out": "yellow", "running": "cyan", "aggregating": "cyan",
               "scheduled": "blue"}
LEVEL_STYLE = {"DEBUG": "dim", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}
# The record the master puts first when older ones were dropped (docs/api.md).
_MARKER = re.compile(r"\d+ older log records were dropped")


def fmt_time(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def fmt_clock(value: Any) -> str:
    """HH:MM:SS.mmm of a unix time, '' when there is none."""
    if not isinstance(value, int | float):
        return ""
    return datetime.fromtimestamp(value).strftime("%H:%M:%S.%f")[:-3]


def fmt_eta(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def fmt_age(seconds: Any) -> str:
    """`0.4s ago`, `12s ago`, `3m05s ago`."""
    if not isinstance(seconds, int | float):
        return ""
    seconds = max(0.0, seconds)
    return f"{seconds:.1f}s ago" if seconds < 10 else f"{fmt_eta(seconds)} ago"


def fmt_elapsed(seconds: float) -> str:
    """`0:04`, `12:30`, `1:02:03`."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def pct(fraction: Any) -> str:
    """`42%`, rounded down: 99.9% is not done, and does not say 100%."""
    value = float(fraction) if isinstance(fraction, int | float) else 0.0
    return f"{math.floor(value * 100 + 1e-6)}%"


def fmt_progress(task: Mapping[str, Any]) -> str:
    p = task.get("progress") or {}
    text = f"{pct(p.get('fraction'))} {p.get('subtasks_done', 0)}/{p.get('subtasks_total', 0)}"
    if p.get("subtasks_running"):
        text += f", {p['subtasks_running']} running"
    if p.get("subtasks_failed"):
        text += f", {p['subtasks_failed']} failed"
    return text


def counts(task: dict[str, Any]) -> tuple[int, int, int, int]:
    """(done, total, running, failed) subtasks."""
    p = task.get("progress") or {}
    return (int(p.get("subtasks_done") or 0), int(p.get("subtasks_total") or 0),
            int(p.get("subtasks_running") or 0), int(p.get("subtasks_failed") or 0))


def progress_line(fraction: float, task: dict[str, Any], eta: float | None) -> str:
    """`42% 3/8 done, 2 running, 0 failed, eta 3s` (no eta part while there is no estimate)."""
    done, total, running, failed = counts(task)
    text = f"{pct(fraction)} {done}/{total} done, {running} running, {failed} failed"
    return text + (f", eta {fmt_eta(eta)}" if eta is not None else "")


def styled_state(state: Any) -> str:
    style = STATE_STYLE.get(str(state))
    return f"[{style}]{state}[/]" if style else str(state)


def is_marker(record: Mapping[str, Any]) -> bool:
    """The master's "N older log records were dropped" record."""
    return record.get("subtask") is None and bool(_MARKER.fullmatch(str(record.get("message"))))


def log_where(record: Mapping[str, Any]) -> str:
    """`#3 a1 local-1`: subtask, attempt and worker, those that are known."""
    return " ".join(x for x in (
        f"#{record['subtask']}" if record.get("subtask") is not None else "",
        f"a{record['attempt']}" if record.get("attempt") is not None else "",
        str(record.get("worker") or ""),
    ) if x)


def log_text(record: Mapping[str, Any]) -> str:
    """One log record as one plain line: `12:00:01.250 INFO    [#3 a1 local-1] message`."""
    level = str(record.get("level") or "").upper()
    if is_marker(record):
        return f"{fmt_clock(record.get('ts'))} {level:<7} ... {record.get('message')} ..."
    return f"{fmt_clock(record.get('ts'))} {level:<7} [{log_where(record)}] {record.get('message')}"


def is_final(task: Mapping[str, Any]) -> bool:
    """True when the task JSON is in a state it will never leave."""
    return task.get("state") in FINAL
