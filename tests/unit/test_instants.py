"""`instants.parse_instant` and `durations.parse_duration`: what a time and a duration may be
written as, and the errors that name what is wrong."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.durations import parse_duration
from herder.instants import parse_instant

CHRISTMAS = datetime(2026, 12, 24, 18, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "value",
    [
        CHRISTMAS,
        int(CHRISTMAS),
        str(int(CHRISTMAS)),
        "2026-12-24T18:00:00Z",
        "2026-12-24T19:00:00+01:00",
        datetime(2026, 12, 24, 13, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_each_form_is_the_same_moment(value: object) -> None:
    assert parse_instant(value) == CHRISTMAS


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("2026-12-24T18:00:00", "no time zone"),
        (datetime(2026, 12, 24, 18, 0), "no time zone"),
        ("tomorrow", "not a UNIX timestamp nor an ISO 8601 time"),
        (math.nan, "between 1970 and 9999"),
        ("inf", "between 1970 and 9999"),
        (-1, "between 1970 and 9999"),
        (True, "not a bool"),
        (None, "not NoneType"),
    ],
)
def test_what_is_no_time_is_named(value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_instant(value)


@given(st.datetimes(timezones=st.timezones(), min_value=datetime(1971, 1, 1),
                    max_value=datetime(9998, 1, 1)))
def test_an_aware_datetime_reads_back_through_its_iso_text(moment: datetime) -> None:
    assert parse_instant(moment.isoformat()) == pytest.approx(moment.timestamp())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1m30s", 90), ("500ms", 0.5),
     ("1.5", 1.5), (7, 7.0)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5s", "nan", "inf", "1e999"])
def test_what_is_no_duration_is_a_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
