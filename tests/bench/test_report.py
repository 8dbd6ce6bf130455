"""The report's W3 occupancy: the share of W3's wall herder's slots ran subtasks, and what a
subtask took there, from a trial's figures; and the sentence that puts them beside the bound."""

from __future__ import annotations

from bench import report


def _trial(seconds: float, worked: float | None) -> report.Trial:
    w3: dict[str, float] = {"parts": 400, "seconds": seconds, "cpu": 0.0}
    if worked is not None:
        w3["worked"] = worked
    return {"system": "herder", "version": "0", "w3": w3}


def test_occupancy_is_the_slots_share_of_the_wall() -> None:
    trial = _trial(seconds=1.25, worked=2.4)  # 2 slots x 1.25 s = 2.5 s of slot time
    assert report._w3_busy(trial) == 2.4 / 2.5
    assert report._w3_subtask_ms(trial) == 6.0
    assert report._w3_busy(_trial(1.0, None)) is None  # a peer: no run times of its own


def test_the_sentence_names_the_bound_the_shares_and_herders_occupancy() -> None:
    summary = report.summarize({
        "herder": [_trial(1.25, 2.4), _trial(1.5, 2.7), _trial(1.2, 2.3)],
        "bare": [{"system": "bare", "version": "0", "w3": {"parts": 400, "seconds": 1.0}}],
    })
    assert summary["herder"]["w3_busy"]["median"] == 2.3 / 2.4  # of 0.96, 0.90, 0.958
    text = report.w3_bound(summary, spin_ms=4.9)
    assert text is not None
    assert "reach an efficiency of 0.97" in text  # 0.975 s / 1.0 s
    assert "herder 0.80" in text  # its median efficiency, 0.975 / 1.25 = 0.78, over 0.975
    assert "were running a subtask 95.8% (90.0%-96.0%)" in text
    assert "a subtask took 6.00 ms (5.75-6.75)" in text and "against 4.90 ms alone" in text
    assert report.w3_bound({"huey": {}}) is None
