"""When a schedule fires: a cron expression in a time zone, or a fixed period. Pure: the times
are passed in (seconds since the epoch) and handed back; no clock is read.

Cron expressions are the standard five fields, parsed by croniter and evaluated in the
schedule's time zone (zoneinfo). Across a change of clocks, the rule is Debian cron's: a firing
whose local time is skipped (spring forward) happens at the first time after the gap, and a
firing at a fixed hour in the hour that repeats (fall back) happens once, in its first pass; an
expression with `*` for the hour fires in both passes, as each is a real hour.

Missed firings are caught up by one: `due` gives the latest firing at or before now that comes
after the last one made, never the ones before it. The next firing is counted from that target
time, not from when the caller woke, so that lateness does not add up.

Imports croniter, zoneinfo and `herder.durations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from herder.durations import parse_duration

#: the shortest period of an `every` schedule
MIN_PERIOD = 0.1


class BadTimetable(ValueError):
    """A schedule's cron, every or timezone is wrong; `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Timetable:
    """Firings of `cron` in `zone`, or every `period` seconds counted from `anchor`."""

    cron: str | None
    period: float | None
    zone: tzinfo
    anchor: float

    @classmethod
    def parse(
        cls, cron: str | None, every: str | None, timezone: str, anchor: float
    ) -> Timetable:
        """Raises BadTimetable naming the field that is wrong."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadTimetable("timezone", f"{timezone!r} is not a known time zone") from None
        if (cron is None) == (every is None):
            raise BadTimetable("cron", "give exactly one of cron and every")
        if cron is not None:
            fields = cron.split()
            if len(fields) != 5 or not croniter.is_valid(cron):
                raise BadTimetable(
                    "cron", f"{cron!r} is not a cron expression of 5 fields "
                    "(minute hour day-of-month month day-of-week)"
                )
            return cls(" ".join(fields), None, zone, anchor)
        assert every is not None
        try:
            period = parse_duration(every)
        except ValueError as exc:
            raise BadTimetable("every", str(exc)) from None
        if period < MIN_PERIOD:
            raise BadTimetable("every", f"{every!r} is shorter than {MIN_PERIOD} s")
        return cls(None, period, zone, anchor)

    def next_after(self, t: float) -> float:
        """The first firing strictly after `t`."""
        if self.period is not None:
            steps = max(0, math.floor((t - self.anchor) / self.period)) + 1
            at = self.anchor + steps * self.period
            return at if at > t else at + self.period
        assert self.cron is not None
        it = croniter(self.cron, datetime.fromtimestamp(t, self.zone))
        while True:
            at = float(it.get_next(float))
            if at > t and not self._repeated(at):
                return at

    def due(self, last: float | None, now: float) -> float | None:
        """The latest firing at or before `now` and after `last` (None: after the anchor), or
        None when no firing is due: the one run that catches up any number of missed ones."""
        after = self.anchor if last is None else last
        first = self.next_after(after)
        if first > now:
            return None
        if self.period is not None:
            steps = math.floor((now - self.anchor) / self.period)
            latest = self.anchor + steps * self.period
            return max(first, latest if latest <= now else latest - self.period)
        assert self.cron is not None
        it = croniter(self.cron, datetime.fromtimestamp(now, self.zone))
        latest = float(it.get_prev(float))
        while self._repeated(latest):
            latest = float(it.get_prev(float))
        following = self.next_after(latest)
        if following <= now:  # `now` is a firing itself (get_prev looks strictly before)
            latest = following
        return max(first, latest)

    def _repeated(self, at: float) -> bool:
        """A firing at a fixed hour, in the second pass of an hour that repeats."""
        assert self.cron is not None
        if self.cron.split()[1] == "*":
            return False
        local = datetime.fromtimestamp(at, self.zone)
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
