"""The store's share of W1, alone: the writes and reads the master makes for one-subtask tasks,
in the batches it makes them, on a SQLite file, without HTTP, WebSockets or workers:

    .venv/bin/python -m bench.store_cost [--tasks 10000] [--batch 1000]

Prints microseconds of store time per task (best of 3 runs, each on a fresh file), and per
call. Use it to measure a change of schema or of a query without the noise of the whole system.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

from herder.jsontext import JSONText
from herder.master.ids import new_task_id
from herder.model import LogRecord, TaskRecord, TaskState
from herder.store.sqlite import SqliteStore


def one_run(tasks: int, batch: int) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as where:
        store = SqliteStore(os.path.join(where, "bench.db"))
        store.migrate()
        spent: dict[str, float] = defaultdict(float)

        def timed(name: str, fn: object, *args: object) -> object:
            t0 = time.perf_counter()
            out = fn(*args)  # type: ignore[operator]
            spent[name] += time.perf_counter() - t0
            return out

        def journal(ids: list[str], state: str) -> None:
            now = time.time()
            timed("logs.append", store.logs.append, [
                LogRecord(task_id=i, ts=now, level="INFO", message=state, kind="state")
                for i in ids
            ])

        for first in range(0, tasks, batch):
            now = time.time()
            # split before they are stored (a quick split): stored running with their subtasks
            records = [
                TaskRecord(id=new_task_id(), type="noop", params={"value": n}, created_at=now,
                           state=TaskState.RUNNING, started_at=now, subtasks_total=1)
                for n in range(first, min(tasks, first + batch))
            ]
            ids = [r.id for r in records]
            timed("insert_tasks", store.insert_tasks, records, [[JSONText("null")]] * len(ids))
            # a short attempt's start goes with its result (master/starts.py)
            timed("record_results", store.record_results,
                  [(i, 0, 1, "null", now, "w1", now, "u1") for i in ids])
            with store.transaction():
                timed("finish_tasks", store.finish_tasks,
                      [(i, TaskState.SUCCEEDED, now, None, None) for i in ids])
                journal(ids, "succeeded")  # the only state stored (pending, running: live only)
        store.close()
        return sum(spent.values()), dict(spent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1_000)
    a = ap.parse_args()
    total, spent = min((one_run(a.tasks, a.batch) for _ in range(3)), key=lambda r: r[0])
    print(f"store time per task: {total / a.tasks * 1e6:,.0f} us")
    for name, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:16s} {seconds / a.tasks * 1e6:7,.1f} us")


if __name__ == "__main__":
    main()
