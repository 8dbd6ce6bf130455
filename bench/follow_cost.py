"""What following a task costs the master: its CPU with one `herder watch` and the dashboard
open on the running task, as a ratio to the same run with nobody watching (issue 3).

    .venv/bin/python -m bench.follow_cost [--seconds 15] [--slots 8]

The load: one `sleep` task of many short parts on 2 workers, so that the master runs about
1,000 subtasks a second (the rate actually reached is printed). The master's CPU time is read
from /proc over a window in the steady middle of the run, once unwatched and once watched.
Needs Debian's chromium and playwright for the dashboard part (as the dashboard tests do).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

from bench.chromium import CHROMIUM, LAUNCH_ARGS
from herder import LocalCluster


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(watch: bool, seconds: float, slots: int, part: float) -> dict[str, float]:
    cluster = LocalCluster(workers=2, slots=slots, log_level="warning")
    with cluster as client, ExitStack() as stack:
        master = cluster.processes.master
        assert master is not None
        parts = int(seconds * 3 * 1000)  # more than the window needs at 1,000/s
        handle = client.submit("sleep", {"seconds": part, "parts": parts})
        if watch:
            env = {**os.environ, "HERDER_URL": cluster.url}
            watcher = subprocess.Popen(
                [sys.executable, "-m", "herder", "watch", handle.id, "--plain"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )
            stack.callback(watcher.kill)
            page = _open_dashboard(stack, f"{cluster.url}/#/task/{handle.id}")
        time.sleep(2.0)  # past the start: dashboard loaded, workers busy
        done0 = handle.status()["progress"]["subtasks_done"]
        cpu0, t0 = cpu_seconds(master.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(master.pid), time.monotonic()
        done1 = handle.status()["progress"]["subtasks_done"]
        if watch:
            assert page.title() is not None  # the page was still there
        handle.cancel()
        rate = (done1 - done0) / (t1 - t0)
        return {"rate": rate, "master_cpu": (cpu1 - cpu0) / (t1 - t0)}


def _open_dashboard(stack: ExitStack, url: str) -> Any:
    from playwright.sync_api import sync_playwright

    pw = stack.enter_context(sync_playwright())
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    stack.callback(browser.close)
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("[data-testid=task-state]")
    return page


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--part", type=float, default=0.012, help="seconds each subtask sleeps")
    a = ap.parse_args()
    quiet = run(False, a.seconds, a.slots, a.part)
    watched = run(True, a.seconds, a.slots, a.part)
    for label, run_ in (("unwatched", quiet), ("watched", watched)):
        print(f"{label}: {run_['rate']:.0f} subtasks/s, master CPU {run_['master_cpu']:.3f} s/s")
    per_quiet = quiet["master_cpu"] / quiet["rate"]
    per_watched = watched["master_cpu"] / watched["rate"]
    print(f"master CPU per subtask: {per_quiet * 1e6:.0f} us unwatched, "
          f"{per_watched * 1e6:.0f} us watched; ratio {per_watched / per_quiet:.3f}")


if __name__ == "__main__":
    main()
