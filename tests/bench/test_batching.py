"""`python -m bench.batching` at small sizes: it runs W1 in its two phases and W3 on a real
cluster and reports its figures. No timing is asserted: they depend on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_batching_reports_both_workloads_and_the_commits_batches() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run(
        [sys.executable, "-m", "bench.batching", "--tasks", "300", "--parts", "20",
         "--rounds", "2", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(figures["w1"]) == len(figures["w3"]) == 2
    for w1 in figures["w1"]:
        assert w1["rate"] > 0 and w1["submit_s"] > 0 and w1["gather_s"] > 0
        assert w1["submit_busy"] >= 0 and w1["gather_busy"] >= 0
    for w3 in figures["w3"]:
        assert w3["efficiency"] > 0 and w3["master_ms"] >= 0
    # every result went through a group commit: at least one per commit, on average
    assert figures["w1_results_per_commit"] >= 1
    assert figures["w3_results_per_commit"] >= 1
    assert "results per commit" in done.stdout
