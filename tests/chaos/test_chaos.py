"""A short, seeded chaos run in the suite: 120 tasks while workers and (twice) the master are
killed for 50 s. The full run is `python -m tests.chaos --seed 1 --duration 300`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.run import Config, run


@pytest.mark.timeout(240)
def test_chaos_short(tmp_path: Path) -> None:
    report = run(Config(seed=1, duration=50, tasks=120, settle=60, workdir=str(tmp_path)))
    print("\n" + "\n".join(report.lines()))
    assert report.ok, "\n".join(report.failures[:20])
    assert report.acked == 120 and report.states["succeeded"] == 120
    assert report.worker_kills >= 5 and report.master_kills == 2
