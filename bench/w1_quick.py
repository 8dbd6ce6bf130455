"""W1, W1-split and W2 alone, with CPU per process, for measuring one hot-path change at a time
(issue 5; `python -m bench` is the full comparison with the peers):

    .venv/bin/python -m bench.w1_quick [--tasks 5000] [--parts 10000] [--rounds 300] [--slots 4]
                                       [--db URL | --postgres]

W1: `--tasks` no-op tasks submitted in batches of 1,000, then gathered over one event stream.
W1-split: one `sleep` task of `--parts` subtasks of 0 s. W2: `--rounds` sequential
`Client.run` of a no-op task (p50 and p99 in ms; 0 skips it). All on 2 workers with `--slots`
each, on a SQLite file in a temporary directory, or on the store `--db` names, or with
`--postgres` on a database of a throwaway PostgreSQL server started for the run (the tests' own,
`tests/pgserver.py`, with PostgreSQL's durable defaults, fsync and synchronous commits on, and
its files on the disk, not on a RAM disk).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

from herder import LocalCluster


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--parts", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--json", action="store_true",
                    help="one JSON object of the figures at the end (for bench.ab)")
    ap.add_argument("--db", help="the master's store (default: a SQLite file of its own)")
    ap.add_argument("--postgres", action="store_true",
                    help="run on a throwaway PostgreSQL server (needs its binaries and psycopg)")
    a = ap.parse_args()
    with _store(a.db, a.postgres) as db:
        run(a, db)


@contextlib.contextmanager
def _store(db: str | None, postgres: bool) -> Iterator[str | None]:
    if not postgres:
        yield db
        return
    from tests.pgserver import DURABLE, PostgresServer  # the repository's root is on the path

    with PostgresServer(settings=DURABLE, on_disk=True) as server:
        yield server.create_database("herder_bench")


def run(a: argparse.Namespace, db: str | None) -> None:
    figures: dict[str, dict[str, float]] = {}
    cluster = LocalCluster(workers=2, slots=a.slots, log_level="warning",
                           **({"db": db} if db else {}))
    with cluster as client:
        # an older commit's LocalCluster (bench.ab) has the pids itself
        group: Any = getattr(cluster, "processes", cluster)
        pids = [group.master_pid, *group.worker_pids]

        def measure(label: str, n: int, run: object) -> dict[str, float]:
            before = [cpu_seconds(p) for p in pids]
            mine, start = time.process_time(), time.monotonic()
            run()  # type: ignore[operator]
            wall = time.monotonic() - start
            after = [cpu_seconds(p) for p in pids]
            used = [b - a for a, b in zip(before, after, strict=True)]
            got = figures[label] = {
                "rate": n / wall,
                "client": (time.process_time() - mine) / n * 1e6,
                "master": used[0] / n * 1e6,
                "workers": sum(used[1:]) / n * 1e6,
            }
            print(
                f"{label}: {got['rate']:,.0f}/s; CPU us per item: client {got['client']:,.0f}, "
                f"master {got['master']:,.0f}, workers {got['workers']:,.0f}"
            )
            return got

        def w1() -> None:
            handles = []
            for first in range(0, a.tasks, 1000):
                batch = range(first, min(a.tasks, first + 1000))
                handles += client.submit_many(
                    [{"type": "noop", "params": {"value": i}} for i in batch]
                )
            assert client.gather(handles, timeout=600) == list(range(a.tasks))

        def split() -> None:
            handle = client.submit("sleep", {"seconds": 0, "parts": a.parts})
            assert handle.result(timeout=600) == a.parts

        round_trips: list[float] = []

        def w2() -> None:
            for i in range(a.rounds):
                start = time.perf_counter()
                assert client.run("noop", {"value": i}) == i
                round_trips.append((time.perf_counter() - start) * 1e3)

        measure("W1", a.tasks, w1)
        measure("W1-split", a.parts, split)
        if a.rounds:
            client.run("noop", {"value": 0})  # its connection is open before the clock starts
            got = measure("W2", a.rounds, w2)
            del got["rate"]
            round_trips.sort()
            got["p50"] = statistics.median(round_trips)
            got["p99"] = round_trips[min(len(round_trips) - 1, int(len(round_trips) * 0.99))]
            print(f"W2: p50 {got['p50']:.2f} ms, p99 {got['p99']:.2f} ms")
    if a.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
