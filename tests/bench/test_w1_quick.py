"""`python -m bench.w1_quick` at small sizes, on SQLite and on a throwaway PostgreSQL server
(`--postgres`): it runs W1, W1-split and W2 end to end and reports their figures. No timing is
asserted: they depend on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import require
from tests.pgserver import unavailable

ROOT = Path(__file__).resolve().parents[2]


def _run(*extra: str) -> dict[str, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run(
        [sys.executable, "-m", "bench.w1_quick", "--tasks", "200", "--parts", "100",
         "--rounds", "10", "--slots", "1", "--json", *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _check(figures: dict[str, dict[str, float]]) -> None:
    assert figures["W1"]["rate"] > 0 and figures["W1-split"]["rate"] > 0
    assert figures["W1"]["master"] > 0  # the master's CPU was read
    assert 0 < figures["W2"]["p50"] <= figures["W2"]["p99"]


@pytest.mark.timeout(120)
def test_it_measures_herder_on_sqlite() -> None:
    _check(_run())


@pytest.mark.timeout(120)
def test_it_measures_herder_on_a_postgresql_server_of_its_own() -> None:
    require(unavailable(), "the PostgreSQL tests")
    _check(_run("--postgres"))
