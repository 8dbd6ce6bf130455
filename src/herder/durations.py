"""Durations as people write them on a command line: `30s`, `10m`, `2h`, `1d`, or a plain
number of seconds (`90`, `1.5`). Pure; imports only the stdlib."""

from __future__ import annotations

import math
import re

#: seconds per unit
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)")


def parse_duration(text: str) -> float:
    """`text` in seconds. ValueError naming the text for anything else (a negative, a NaN, an
    unknown unit)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a number with a unit s, m, h or d "
            f"(30s, 10m, 2h, 1d), or a number of seconds"
        )
    seconds = float(match["number"]) * UNITS[match["unit"] or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a duration: it is too large")
    return seconds
