"""`python -m bench.ab`: before → after of a change in pairs that alternate which runs first. No
timing is asserted: the numbers depend on the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.ab import summarize

ROOT = Path(__file__).resolve().parents[2]


def figures(rate: float, master: float) -> dict[str, dict[str, float]]:
    one = {"rate": rate, "client": 10.0, "master": master, "workers": 20.0}
    w2 = {"p50": 1e6 / rate, "p99": 2e6 / rate, "client": 10.0, "master": master, "workers": 20.0}
    return {"W1": one, "W1-split": dict(one), "W2": w2}


def test_the_summary_gives_medians_and_the_pairs_won() -> None:
    pairs = [
        (figures(1000, 500), figures(1200, 450)),
        (figures(1100, 480), figures(1000, 490)),
        (figures(900, 520), figures(1300, 400)),
    ]
    table = summarize(pairs)
    rows = {
        tuple(cell.strip() for cell in line.split("|")[1:3]): line for line in table.splitlines()
    }
    # more is better for the rate, less for CPU; a tie is not a win
    assert "| 1,000 (900-1,100) | 1,200 (1,000-1,300) | 2 of 3 |" in rows[("W1", "rate /s")]
    assert "| 500 (480-520) | 450 (400-490) | 2 of 3 |" in rows[("W1", "master µs")]
    assert rows[("W1-split", "client µs")].endswith("| 0 of 3 |")
    # latencies: in ms with two decimals, less is better; W2 has no rate
    assert "| 1,000.00 (909.09-1,111.11) | 833.33 (769.23-1,000.00) | 2 of 3 |" in rows[
        ("W2", "p50 ms")
    ]
    assert ("W2", "rate /s") not in rows and ("W1", "p50 ms") not in rows


@pytest.mark.timeout(180)
@pytest.mark.parametrize("together", [False, True], ids=["one-after-the-other", "together"])
def test_it_compares_a_commit_with_the_working_tree_end_to_end(together: bool) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout of the project (a worktree of a commit is made)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run(
        [sys.executable, "-m", "bench.ab", "HEAD", "--reps", "2", "--tasks", "200",
         "--parts", "200", "--rounds", "20", *(["--together"] if together else [])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=170,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pair 1 of 2 (base first)" in done.stdout and "pair 2 of 2 (new first)" in done.stdout
    assert "| W1-split | master µs |" in done.stdout and "| W2 | p99 ms |" in done.stdout
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    assert "herder-ab-" not in worktrees  # removed at the end
