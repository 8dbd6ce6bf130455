"""CPU per subtask of each thread of the master and the workers, during one W1-split: where a
process spends its time, between its event loop and its slot threads (issue 5).

    .venv/bin/python -m bench.thread_cpu [--parts 20000] [--slots 1]

One `bench_split` task of `--parts` no-op subtasks on 2 workers of `--slots` slots (the
benchmark runs 1), after a warm-up of 2,000. Each thread's utime + stime from
/proc/PID/task/TID/stat, over the run, divided by the subtasks of the whole task.
"""

from __future__ import annotations

import argparse
import os
import time

from herder import LocalCluster


def thread_seconds(pid: int) -> dict[int, float]:
    """CPU seconds so far of each live thread of `pid`, by thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--parts", type=int, default=20_000)
    ap.add_argument("--slots", type=int, default=1)
    a = ap.parse_args()
    cluster = LocalCluster(workers=2, slots=a.slots, tasks=["bench.tasks"], log_level="warning")
    with cluster as client:
        client.run("bench_split", {"parts": 2000}, wait=60)
        processes = cluster.processes
        assert processes.master_pid is not None
        pids = {"master": processes.master_pid}
        pids.update({f"worker {i + 1}": pid for i, pid in enumerate(processes.worker_pids) if pid})
        before = {role: thread_seconds(pid) for role, pid in pids.items()}
        started = time.monotonic()
        assert client.run("bench_split", {"parts": a.parts}, wait=600) == a.parts
        wall = time.monotonic() - started
        print(f"W1-split: {a.parts / wall:,.0f} subtasks/s; CPU us per subtask, by thread:")
        for role, pid in pids.items():
            for tid, seconds in sorted(thread_seconds(pid).items()):
                used = seconds - before[role].get(tid, 0.0)
                # the main thread runs the event loop; the others are the store's checkpoint
                # thread (master) and the slot threads (workers)
                name = "main (event loop)" if tid == pid else f"thread {tid}"
                if used > 0:
                    print(f"  {role:9s} {name:18s} {used / a.parts * 1e6:7.1f}")


if __name__ == "__main__":
    main()
