"""The timetable of schedules (`scheduling.timetable`): cron in a time zone across clock
changes, periods, and the one run that catches up missed firings."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.scheduling.timetable import BadTimetable, Timetable

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int, zone: ZoneInfo = BERLIN) -> float:
    return datetime(*fields, tzinfo=zone).timestamp()  # type: ignore[misc]


def local(t: float) -> str:
    return datetime.fromtimestamp(t, BERLIN).strftime("%Y-%m-%d %H:%M %Z")


def firings(table: Timetable, start: float, n: int) -> list[str]:
    out, t = [], start
    for _ in range(n):
        t = table.next_after(t)
        out.append(local(t))
    return out


def test_a_daily_cron_keeps_its_local_hour_across_spring_forward() -> None:
    table = Timetable.parse("0 9 * * *", None, "Europe/Berlin", 0.0)
    assert firings(table, at(2026, 3, 28, 12), 2) == [
        "2026-03-29 09:00 CEST", "2026-03-30 09:00 CEST"
    ]
    # the day of the change has 23 hours, and so has the gap between its firings
    assert table.next_after(at(2026, 3, 28, 8)) == at(2026, 3, 28, 9)
    assert at(2026, 3, 29, 9) - at(2026, 3, 28, 9) == 23 * 3600


def test_a_firing_in_the_skipped_hour_happens_right_after_the_gap() -> None:
    table = Timetable.parse("30 2 * * *", None, "Europe/Berlin", 0.0)
    assert firings(table, at(2026, 3, 28, 12), 2) == [
        "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST"
    ]


def test_a_fixed_hour_in_the_repeated_hour_fires_once_at_fall_back() -> None:
    table = Timetable.parse("30 2 * * *", None, "Europe/Berlin", 0.0)
    assert firings(table, at(2026, 10, 24, 12), 2) == [
        "2026-10-25 02:30 CEST", "2026-10-26 02:30 CET"
    ]
    # caught up after the repeated hour: the one firing of that night, not a second
    assert table.due(at(2026, 10, 24, 3), at(2026, 10, 25, 5)) == at(2026, 10, 25, 2, 30)


def test_an_hourly_cron_fires_in_both_passes_of_the_repeated_hour() -> None:
    table = Timetable.parse("0 * * * *", None, "Europe/Berlin", 0.0)
    assert firings(table, at(2026, 10, 25, 1, 30), 3) == [
        "2026-10-25 02:00 CEST", "2026-10-25 02:00 CET", "2026-10-25 03:00 CET"
    ]


def test_cron_is_read_in_the_schedule_time_zone() -> None:
    table = Timetable.parse("0 9 * * *", None, "America/New_York", 0.0)
    assert table.next_after(at(2026, 1, 5, 0, zone=ZoneInfo("UTC"))) == at(
        2026, 1, 5, 14, zone=ZoneInfo("UTC")
    )


def test_missed_firings_are_caught_up_by_the_latest_one_only() -> None:
    table = Timetable.parse(None, "10s", "UTC", 1000.0)
    assert table.due(1010.0, 1095.5) == 1090.0  # 8 missed: one run, the latest
    assert table.due(1090.0, 1095.5) is None
    assert table.due(None, 1005.0) is None  # the first firing is a period after the anchor
    assert table.due(None, 1010.0) == 1010.0
    cron = Timetable.parse("*/5 * * * *", None, "UTC", 0.0)
    assert cron.due(at(2026, 1, 1, 0, 0, zone=ZoneInfo("UTC")),
                    at(2026, 1, 1, 3, 7, zone=ZoneInfo("UTC"))) == at(
        2026, 1, 1, 3, 5, zone=ZoneInfo("UTC"))
    assert cron.due(None, at(2026, 1, 1, 3, 5, zone=ZoneInfo("UTC"))) == at(
        2026, 1, 1, 3, 5, zone=ZoneInfo("UTC"))


@pytest.mark.parametrize(
    ("cron", "every", "timezone", "field"),
    [
        ("0 9 * *", None, "UTC", "cron"),
        ("0 9 * * * *", None, "UTC", "cron"),
        ("61 * * * *", None, "UTC", "cron"),
        (None, "soon", "UTC", "every"),
        (None, "0s", "UTC", "every"),
        (None, "1s", "Mars/Olympus", "timezone"),
        ("* * * * *", "1s", "UTC", "cron"),
        (None, None, "UTC", "cron"),
    ],
)
def test_a_bad_timetable_names_its_field(
    cron: str | None, every: str | None, timezone: str, field: str
) -> None:
    with pytest.raises(BadTimetable) as caught:
        Timetable.parse(cron, every, timezone, 0.0)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


_PERIOD = st.sampled_from(["1s", "2s", "7s", "1m", "0.5s"])
_TIMES = st.floats(min_value=1e9, max_value=2e9)


@given(_PERIOD, _TIMES, st.floats(min_value=0, max_value=1e6),
       st.floats(min_value=0, max_value=1e5))
def test_due_is_one_firing_between_the_last_and_now(
    every: str, anchor: float, since: float, gap: float
) -> None:
    table = Timetable.parse(None, every, "UTC", anchor)
    last = table.next_after(anchor + since)
    now = last + gap
    target = table.due(last, now)
    following = table.next_after(last)
    if following > now:
        assert target is None
    else:
        assert target is not None and last < target <= now
        assert table.next_after(target) > now  # nothing due is left behind it


@given(st.sampled_from(["*/7 * * * *", "0 9 * * 1-5", "30 2 * * *", "0 * * * *"]),
       st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
       _TIMES)
def test_cron_firings_only_go_forward(cron: str, timezone: str, t: float) -> None:
    table = Timetable.parse(cron, None, timezone, 0.0)
    first = table.next_after(t)
    assert first > t and table.next_after(first) > first
    assert table.due(t, first) == first
