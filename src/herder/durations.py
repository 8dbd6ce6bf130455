"""Durations as people write them: `30s`, `10m`, `2h`, `1d`, `500ms`, `1m30s`, or a plain number
of seconds (`90`, `1.5`). The one parser of them, for the CLI's options and whatever else reads
a duration. Pure; imports only the stdlib."""

from __future__ import annotations

import math
import re

#: seconds per unit
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def parse_duration(text: str | float) -> float:
    """`text` in seconds (a number is taken as seconds). ValueError naming the text for anything
    else: an unknown unit, a negative, a NaN or an infinity."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        written = text.strip().lower()
        try:
            seconds = float(written)
        except ValueError:
            parts = _PART.findall(written)
            if not parts or "".join(n + u for n, u in parts) != written:
                raise ValueError(
                    f"not a duration: {text!r} (use e.g. 30s, 10m, 2h, 1d, 1m30s, 500ms or 1.5)"
                ) from None
            seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {text!r} (must be a finite number >= 0)")
    return seconds
