"""How close to its time a delayed task starts: 200 tasks submitted at once with their
`not_before` spread over the next ~5 s, on a local cluster (SQLite, 2 workers of 2 slots).

`python -m bench.delay [--tasks 200] [--spread 5]` prints p50 and max of `started_at -
not_before` over the tasks, as their JSON gives them (the master's clock on both sides).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from herder import LocalCluster

#: how far ahead the first task's time is: the batch is stored before any is due
LEAD = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--spread", type=float, default=5.0, help="seconds the times span")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(workers=2, slots=2, db=str(Path(tmp) / "delay.db"))
        with cluster as client:
            first = time.time() + LEAD
            items = [
                {"type": "noop", "not_before": first + args.spread * i / args.tasks}
                for i in range(args.tasks)
            ]
            handles = client.submit_many(items)
            client.gather(handles, timeout=LEAD + args.spread + 60)
            tasks = [h.status() for h in handles]
    late = sorted(t["started_at"] - t["not_before"] for t in tasks)
    early = sum(d < 0 for d in late)
    print(f"{len(late)} delayed tasks over {args.spread:g} s: started_at - not_before "
          f"p50 {statistics.median(late) * 1000:.1f} ms, max {late[-1] * 1000:.1f} ms, "
          f"min {late[0] * 1000:.1f} ms; {early} started early")


if __name__ == "__main__":
    main()
