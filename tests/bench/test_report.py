"""The report's W3 figures beside the issue's fixed ideal: the efficiency against the spin as
timed in the trial, herder's occupancy of its slots and what a subtask took there; and the
sentence that puts them beside the bound."""

from __future__ import annotations

from bench import report


def _trial(seconds: float, worked: float | None, spin: float = 0.005) -> report.Trial:
    w3: dict[str, float] = {"parts": 400, "seconds": seconds, "cpu": 0.0, "spin_seconds": spin}
    if worked is not None:
        w3["worked"] = worked
    return {"system": "herder", "version": "0", "w3": w3}


def test_occupancy_is_the_slots_share_of_the_wall() -> None:
    trial = _trial(seconds=1.25, worked=2.4)  # 2 slots x 1.25 s = 2.5 s of slot time
    assert report._w3_busy(trial) == 2.4 / 2.5
    assert report._w3_subtask_ms(trial) == 6.0
    assert report._w3_busy(_trial(1.0, None)) is None  # a peer: no run times of its own


def test_the_timed_efficiency_follows_the_hosts_speed_the_fixed_one_does_not() -> None:
    # the same wall on a host twice as slow: the fixed ideal says nothing changed
    fast, slow = _trial(1.25, None, spin=0.0049), _trial(1.25, None, spin=0.0098)
    assert report._w3_eff(fast) == report._w3_eff(slow) == 0.975 / 1.25
    assert report._w3_eff_timed(fast) == 400 * 0.0049 / 2 / 1.25
    assert report._w3_eff_timed(slow) == 2 * report._w3_eff_timed(fast)  # type: ignore[operator]
    assert report._w3_eff_timed({"w3": {"parts": 400, "seconds": 1.0}}) is None  # older JSON


def test_the_sentence_names_the_bound_the_shares_and_herders_occupancy() -> None:
    bare = {"system": "bare", "version": "0",
            "w3": {"parts": 400, "seconds": 1.0, "spin_seconds": 0.005}}
    summary = report.summarize({
        "herder": [_trial(1.25, 2.4), _trial(1.5, 2.7), _trial(1.2, 2.3)],
        "bare": [bare],
    })
    assert summary["herder"]["w3_busy"]["median"] == 2.3 / 2.4  # of 0.96, 0.90, 0.958
    assert summary["herder"]["w3_eff_timed"]["median"] == 0.8  # 400 x 5 ms / 2 / 1.25 s
    text = report.w3_bound(summary)
    assert text is not None
    assert "reach an efficiency of 1.00" in text  # 400 x 5 ms / 2 / 1.0 s
    assert "herder 0.80" in text
    assert "were running a subtask 95.8% (90.0%-96.0%)" in text
    assert "a subtask took 6.00 ms (5.75-6.75)" in text
    assert "against 5.00 ms (5.00-5.00) for one spin alone" in text
    assert report.w3_bound({"huey": {}}) is None
