"""How exactly a schedule fires: an `every: 1s` schedule for about a minute, with the master
killed (kill -9) and started again 3 times in between (issue 22):

    .venv/bin/python -m bench.cron [--seconds 60] [--restarts 3] [--down 2.5]

On one worker and a SQLite file. Prints, over the firings made while a master ran, the lateness
(the task's creation minus its firing's target time) p50, p99 and max; the firings doubled (two
tasks of one target time); the firings missed while a master ran; and per restart, the firings
missed while no master ran and how many runs caught them up (one each, by the catch-up rule).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from herder import LocalCluster

SCHEDULE = "bench-cron"


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--seconds", type=float, default=60.0)
    args.add_argument("--restarts", type=int, default=3)
    args.add_argument("--down", type=float, default=2.5, help="seconds each master is down")
    opts = args.parse_args()
    cluster = LocalCluster(workers=1, slots=4, tasks=("herder.examples",))
    with cluster as client:
        view = client.schedules.add(SCHEDULE, "noop", {"value": 0}, every="1s", overlap="allow")
        start = view["created_at"]
        #: (killed at, running again at)
        downtimes: list[tuple[float, float]] = []
        up_for = (opts.seconds - opts.restarts * opts.down) / (opts.restarts + 1)
        for _ in range(opts.restarts):
            time.sleep(up_for)
            cluster.processes.kill_master()
            killed = time.time()
            time.sleep(opts.down)
            cluster.processes.start_master()
            cluster.wait_ready(workers=0)
            downtimes.append((killed, time.time()))
        time.sleep(up_for)
        end = time.time()
        client.schedules.remove(SCHEDULE)
        tasks = client.list_tasks(schedule=SCHEDULE, limit=1000)
    print(json.dumps(measure(tasks, start, end, downtimes), indent=2))


def measure(
    tasks: list[dict[str, object]], start: float, end: float,
    downtimes: list[tuple[float, float]],
) -> dict[str, object]:
    """The figures of the module's doc. After each kill, the master that starts again makes
    first the run that catches up (its target is before that first task's creation): the
    firings of the grid from the kill to then were missed while no master ran."""
    fired = sorted((float(t["fired_at"]), float(t["created_at"])) for t in tasks)  # type: ignore[arg-type]
    targets = [target for target, _ in fired]
    grid = [start + k for k in range(1, int(end - start))]
    restarts, catch_up = [], set()
    for killed, _back in downtimes:
        woke = min(created for target, created in fired if target > killed)
        missed = [g for g in grid if killed < g < woke]
        runs = [(target, created) for target, created in fired if killed < target < woke]
        catch_up.update(target for target, _ in runs)
        restarts.append({
            "down_s": round(woke - killed, 2), "firings_in_downtime": len(missed),
            "catch_up_runs": len(runs),
            "catch_up_lateness_ms": [round(1000 * (c - t), 1) for t, c in runs],
        })
    downtime = {round(g, 3) for g in grid for killed, _ in downtimes
                if killed < g < min(c for t, c in fired if t > killed)}
    made = {round(t, 3) for t in targets}
    missed_up = [g for g in grid if round(g, 3) not in made and round(g, 3) not in downtime]
    steady = sorted(c - t for t, c in fired if t not in catch_up)
    return {
        "firings": len(targets),
        "doubled": len(targets) - len(set(targets)),
        "missed_while_a_master_ran": len(missed_up),
        "lateness_ms": {
            "p50": round(1000 * statistics.median(steady), 2),
            "p99": round(1000 * steady[int(0.99 * (len(steady) - 1))], 2),
            "max": round(1000 * steady[-1], 2),
        },
        "restarts": restarts,
    }


if __name__ == "__main__":
    main()
