"""How much the master batches, and how much of the time it is busy, for one version of herder
at a time:

    .venv/bin/python -m bench.batching [--tasks 10000] [--parts 400] [--rounds 3] [--json]

W1 (`--tasks` `bench_noop` tasks in one batch, then gathered), each round in its two phases: the
submission (until `submit_many` returns) and the collection (until `gather` returns), with the
master's CPU in each and its share of the phase's wall time (what is left is time the master
waited on someone). W3 (one `bench_cpu` job of `--parts` subtasks of 4.9 ms): the master's CPU per
subtask and the efficiency. Both also report the results per group commit (the master's
`herder_results_per_commit` histogram, over the rounds). On `LocalCluster` with 2 workers of 1
slot, like `make bench`. To compare two versions, run it on each (alternately: the host drifts).
Imports herder and `bench` only.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from typing import Any

from bench import work
from bench.w1_quick import cpu_seconds
from herder import Client, LocalCluster


def results_per_commit(url: str) -> tuple[float, float]:
    """The master's (sum, count) of results per group commit so far."""
    samples: dict[str, float] = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as answer:
        metrics = answer.read().decode()
    for line in metrics.splitlines():
        if line.startswith("herder_results_per_commit_") and "bucket" not in line:
            name, value = line.split()[:2]
            samples[name] = float(value)
    return samples["herder_results_per_commit_sum"], samples["herder_results_per_commit_count"]


def w1_round(client: Client, master: int, tasks: int) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(master), time.monotonic()
    handles = client.submit_many([{"type": "bench_noop"}] * tasks)
    cpu1, t1 = cpu_seconds(master), time.monotonic()
    client.gather(handles, timeout=600)
    cpu2, t2 = cpu_seconds(master), time.monotonic()
    return {
        "rate": tasks / (t2 - t0),
        "submit_s": t1 - t0,
        "submit_busy": (cpu1 - cpu0) / (t1 - t0),
        "gather_s": t2 - t1,
        "gather_busy": (cpu2 - cpu1) / (t2 - t1),
        "master_us": (cpu2 - cpu0) / tasks * 1e6,
    }


def w3_round(client: Client, master: int, parts: int, loops: int) -> dict[str, float]:
    cpu0, t0 = cpu_seconds(master), time.monotonic()
    handle = client.submit("bench_cpu", {"parts": parts, "loops": loops})
    client.gather([handle], timeout=600)
    cpu1, t1 = cpu_seconds(master), time.monotonic()
    ideal = parts * work.spin_seconds(loops) / 2  # two workers of one slot
    return {"efficiency": ideal / (t1 - t0), "master_ms": (cpu1 - cpu0) / parts * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--parts", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON object of the figures at the end")
    a = ap.parse_args()
    loops = work.calibrate()
    figures: dict[str, Any] = {"w1": [], "w3": []}
    cluster = LocalCluster(
        workers=2, slots=1, tasks=["bench.tasks"], log_level="warning",
        extra_master_args=["--max-pending", "1000000"],
    )
    with cluster as client:
        assert cluster.processes.master_pid is not None
        master = cluster.processes.master_pid
        client.gather(client.submit_many([{"type": "bench_noop"}] * 100), timeout=60)  # warm
        before = results_per_commit(cluster.url)
        for _ in range(a.rounds):
            got = w1_round(client, master, a.tasks)
            figures["w1"].append(got)
            print(
                f"W1: {got['rate']:,.0f} tasks/s, master {got['master_us']:,.0f} us per task; "
                f"submission {got['submit_s']:.2f} s, master busy {got['submit_busy']:.0%}; "
                f"collection {got['gather_s']:.2f} s, master busy {got['gather_busy']:.0%}"
            )
        after = results_per_commit(cluster.url)
        figures["w1_results_per_commit"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
        print(f"W1: {figures['w1_results_per_commit']:.1f} results per commit")
        for _ in range(a.rounds):
            got = w3_round(client, master, a.parts, loops)
            figures["w3"].append(got)
            print(
                f"W3: efficiency {got['efficiency']:.2f}, master {got['master_ms']:.3f} ms of CPU "
                "per subtask"
            )
        before, after = after, results_per_commit(cluster.url)
        figures["w3_results_per_commit"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
        print(f"W3: {figures['w3_results_per_commit']:.1f} results per commit")
    if a.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
