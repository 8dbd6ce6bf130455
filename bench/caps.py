"""W1 on a type under a concurrency cap far above what runs, against the same no-op type
without one, alternately on one cluster (issue 22: a cap that is not reached must cost little):

    .venv/bin/python -m bench.caps [--reps 5] [--tasks 3000] [--slots 4]

Each rep runs W1 (`--tasks` no-op tasks submitted in batches of 1,000, then gathered) once per
variant, in an order that alternates between reps: `uncapped` (bench_noop), `max_running`
(bench_noop_capped, whose type caps it at 1,000,000) and `max_parallel` (bench_noop, each
submission with max_parallel 1,000). Prints each variant's rates and their median.
"""

from __future__ import annotations

import argparse
import statistics
import time

from herder import Client, LocalCluster

VARIANTS: dict[str, tuple[str, dict[str, int]]] = {
    "uncapped": ("bench_noop", {}),
    "max_running": ("bench_noop_capped", {}),
    "max_parallel": ("bench_noop", {"max_parallel": 1000}),
}


def w1(client: Client, tasks: int, type_name: str, extra: dict[str, int]) -> float:
    """Tasks per second of one W1 run."""
    start = time.monotonic()
    handles = []
    for first in range(0, tasks, 1000):
        count = min(tasks, first + 1000) - first
        handles += client.submit_many([{"type": type_name, **extra} for _ in range(count)])
    client.gather(handles, timeout=600)
    return tasks / (time.monotonic() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--slots", type=int, default=4)
    a = ap.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cluster = LocalCluster(workers=2, slots=a.slots, tasks=("bench.tasks",), log_level="warning")
    with cluster as client:
        w1(client, min(a.tasks, 1000), "bench_noop", {})  # warm-up
        names = list(VARIANTS)
        for rep in range(a.reps):
            order = names[rep % len(names):] + names[: rep % len(names)]
            for name in order:
                rates[name].append(w1(client, a.tasks, *VARIANTS[name]))
            print(f"rep {rep + 1}: " + ", ".join(f"{n} {rates[n][-1]:,.0f}/s" for n in names))
    for name, got in rates.items():
        print(f"{name}: median {statistics.median(got):,.0f} tasks/s "
              f"(min {min(got):,.0f}, max {max(got):,.0f}, {len(got)} runs)")


if __name__ == "__main__":
    main()
