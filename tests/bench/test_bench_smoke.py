"""`make bench-quick` once, as a smoke test: the driver runs herder's workloads and the scale
workload end to end, writes its table and JSON, and leaves no process behind. No timing is
asserted: the numbers depend on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.procstat import marked

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_bench_quick_runs_herder_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    # `marked` counts this process's children in every run: those it had before (a
    # multiprocessing resource tracker that an earlier test started) are not the run's
    ours_before = {p.pid for p in marked("no run")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "latest-quick.json").read_text())
    herder = doc["summary"]["herder"]
    assert herder["ok"] == 1, herder.get("problems")
    for key in ("w1_rate", "w1_cpu_master", "w1split_rate", "w2_p50", "w3_eff", "start"):
        assert herder[key]["median"] > 0, key
    trial = doc["trials"]["herder"][0]
    assert trial["w1"]["n"] == doc["sizes"]["w1"]
    assert trial["w2"]["n"] == len(trial["w2"]["samples_ms"])
    queued = [int(q) for q in doc["sizes"]["scale_queued"].split(",")]
    assert sorted(int(q) for q in doc["scale"]["points"]) == queued
    for point in doc["scale"]["points"].values():
        assert point["rate"]["median"] > 0
    run_ids = [t["run_id"] for t in (*doc["trials"]["herder"], *doc["scale_runs"])]
    left = [p for r in run_ids for p in marked(r) if p.pid not in ours_before]
    assert len(run_ids) == 2 and not left  # all stopped
    assert doc["summary"]["bare"]["w3_eff"]["median"] > 0  # W3's bound on this host
    table = (tmp_path / "latest-quick.md").read_text()
    assert "| workload | herder" in table and "Targets of issue 5" in table
    assert "W3's bound on this host in this run" in table
    # herder's W3 occupancy, from the run times its workers report: a share of the wall
    assert 0 < herder["w3_busy"]["median"] <= 1.0
    assert herder["w3_subtask_ms"]["median"] > 0
    # and W3 against the spin as timed around its window, for herder and for the bound
    assert herder["w3_eff_timed"]["median"] > 0
    assert doc["summary"]["bare"]["w3_eff_timed"]["median"] > 0
    assert "herder's 2 slots were running a subtask" in table
    assert table in done.stdout  # the same table was printed
