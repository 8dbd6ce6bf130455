"""A moment in time as a submission may give it (a task's `not_before`): a UNIX timestamp in
seconds, an ISO 8601 time with a zone, or an aware `datetime`; always seconds since the epoch
once read. A time without a zone is refused: the master and the client may not share one.
Pure; imports only the stdlib."""

from __future__ import annotations

import math
from datetime import datetime

#: the latest moment taken (the year 9999): past it a datetime cannot be made
LATEST = 253402300799.0


def parse_instant(value: object) -> float:
    """`value` as seconds since the epoch; ValueError saying what is wrong."""
    if isinstance(value, bool):
        raise ValueError("a time is a UNIX timestamp or an ISO 8601 time with a zone, not a bool")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, datetime):
        seconds = _aware(value, repr(value)).timestamp()
    elif isinstance(value, str):
        seconds = _from_text(value)
    else:
        raise ValueError(
            f"a time is a UNIX timestamp or an ISO 8601 time with a zone, not "
            f"{type(value).__name__}"
        )
    if not math.isfinite(seconds) or not 0 <= seconds <= LATEST:
        raise ValueError(f"{value!r} is not a time between 1970 and 9999")
    return seconds


def _from_text(text: str) -> float:
    try:
        return float(text)  # a timestamp written as text (on a command line)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a UNIX timestamp nor an ISO 8601 time with a zone "
            f"(like 2026-12-24T18:00:00Z)"
        ) from None
    return _aware(moment, repr(text)).timestamp()


def _aware(moment: datetime, shown: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{shown} has no time zone: add one (Z, +02:00), or give a UNIX timestamp"
        )
    return moment
