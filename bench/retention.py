"""Store size under a steady load, with retention and without: the SQLite file's size (and its
WAL's) and the rows of each table, sampled while a master runs `rate` tasks a second for
`minutes`, once with `--keep-finished KEEP` and once with `--keep-finished 0` (keep everything):

    .venv/bin/python -m bench.retention [--minutes 10] [--rate 50] [--parts 4] [--keep 30s]
                                        [--every 15] [--json]

Each run has its own cluster (2 workers x 2 slots) and a new SQLite file. The load is
`bench_split` tasks of `parts` subtasks, submitted in one batch per second; every task also has
a journal row (its final state). Prints, per run, one line per sample: seconds since the start,
tasks submitted, file and WAL sizes, rows per table. Imports herder and `bench.tasks` (by name,
in the cluster's processes).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from herder import LocalCluster
from herder.durations import parse_duration

TABLES = ("tasks", "subtasks", "logs")


def sample(db: Path) -> dict[str, int]:
    """The file's and the WAL's sizes, and the rows of each table (read-only)."""
    wal = Path(f"{db}-wal")
    figures = {"file": db.stat().st_size, "wal": wal.stat().st_size if wal.exists() else 0}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        for table in TABLES:
            figures[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return figures


def run(keep: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="herder-retention-") as tmp:
        db = Path(tmp) / "herder.db"
        cluster = LocalCluster(
            workers=2, slots=2, tasks=["bench.tasks"], db=str(db),
            extra_master_args=["--keep-finished", keep, "--log-level", "warning"],
            log_level="warning",
        )
        samples: list[dict[str, Any]] = []
        with cluster as client:
            start = time.monotonic()
            submitted = 0
            next_sample = 0.0
            batch = [{"type": "bench_split", "params": {"parts": args.parts}}] * args.rate
            while (elapsed := time.monotonic() - start) < args.minutes * 60:
                if elapsed >= next_sample:
                    samples.append({"t": round(elapsed), "submitted": submitted, **sample(db)})
                    print(f"keep {keep:>4}: " + _line(samples[-1]), flush=True)
                    next_sample += args.every
                client.submit_many(batch)
                submitted += args.rate
                # one batch a second, whatever the submission took
                time.sleep(max(0.0, start + submitted / args.rate - time.monotonic()))
            samples.append({"t": round(time.monotonic() - start), "submitted": submitted,
                            **sample(db)})
            print(f"keep {keep:>4}: " + _line(samples[-1]), flush=True)
        return samples


def _line(s: dict[str, Any]) -> str:
    return (f"t={s['t']:>4} s  submitted {s['submitted']:>6}  file {s['file'] / 2**20:7.2f} MiB  "
            f"wal {s['wal'] / 2**20:6.2f} MiB  tasks {s['tasks']:>6}  "
            f"subtasks {s['subtasks']:>6}  logs {s['logs']:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=50, help="tasks submitted per second")
    parser.add_argument("--parts", type=int, default=4, help="subtasks per task")
    parser.add_argument("--keep", default="30s", help="--keep-finished of the retention run")
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--json", action="store_true", help="print the samples as JSON too")
    args = parser.parse_args()
    parse_duration(args.keep)  # a bad duration fails here, not in the master
    results = {keep: run(keep, args) for keep in (args.keep, "0")}
    if args.json:
        print(json.dumps(results))
    for keep, samples in results.items():
        last = samples[-1]
        print(f"--keep-finished {keep}: after {last['t']} s and {last['submitted']} tasks: "
              f"file {last['file'] / 2**20:.2f} MiB, {last['tasks']} tasks, "
              f"{last['subtasks']} subtasks, {last['logs']} journal rows")


if __name__ == "__main__":
    main()
