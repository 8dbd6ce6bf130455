"""What a failover of the master costs: two masters on one PostgreSQL store, the active one
killed N times (kill -9), and two workers given both URLs.

`python -m bench.failover [--kills 5] [--failover-timeout 3]` prints:

- the failover time of each kill: from the kill to the first dispatch by the new active master
  (its `herder_dispatch_latency_seconds_count`, which a new master starts from zero, polled
  every 10 ms), with min, median and max;
- what one failover costs a running task: the wall time of one task without a kill, and of the
  same task with the active master killed once, a second into it.

The PostgreSQL server is the tests' throwaway one (`tests/pgserver.py`, run from the
repository's root); each kill starts the killed master again, as a standby.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from herder import Client
from herder.client import MasterUnreachable, TaskHandle
from herder.cluster import child_env, free_port
from herder.errors import ClientError

TASKS = "tests.faulttypes"
#: the task of the runs: many short subtasks, so that the new master has something to dispatch
PARAMS = {"parts": 400, "seconds": 0.05, "salt": 1}
_DISPATCHES = re.compile(r"^herder_dispatch_latency_seconds_count(\{[^}]*\})?\s+(\S+)$", re.M)


class Masters:
    """Two masters (and their workers) on one store, started again when killed."""

    def __init__(self, db: str, timeout: float, logs: Path) -> None:
        self.db, self.timeout, self.logs = db, timeout, logs
        self.env = child_env(None)
        self.urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.workers: list[subprocess.Popen[bytes]] = []

    def start_master(self, url: str) -> None:
        port = url.rsplit(":", 1)[1]
        argv = [sys.executable, "-m", "herder", "master", "--port", port, "--db", self.db,
                "--advertise-url", url, "--failover-timeout", str(self.timeout),
                "--speculate-after", "off", "--tasks", TASKS, "--log-level", "warning"]
        self.procs[url] = self._spawn(argv, f"master-{port}")

    def start(self) -> None:
        self.start_master(self.urls[0])
        self.wait_for(lambda: self.active() == self.urls[0], 60)
        self.start_master(self.urls[1])
        self.wait_for(lambda: _role(self.urls[1]) == "standby", 60)
        for i in range(2):
            argv = [sys.executable, "-m", "herder", "worker", "--master", ",".join(self.urls),
                    "--slots", "2", "--name", f"w{i}", "--tasks", TASKS, "--log-level", "warning"]
            self.workers.append(self._spawn(argv, f"worker-{i}"))
        self.wait_for(lambda: _workers(self.urls[0]) == 2, 60)

    def active(self) -> str | None:
        for url in self.urls:
            if _role(url) == "active":
                return url
        return None

    def kill_active(self) -> tuple[str, float]:
        """kill -9 the active master: (the other's URL, the kill's time)."""
        active = self.active()
        assert active is not None, "no active master"
        self.procs[active].kill()
        killed = time.monotonic()
        self.procs[active].wait()
        return next(u for u in self.urls if u != active), killed

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "ab") as out:
            return subprocess.Popen(argv, env=self.env, stdout=out, stderr=out)

    def stop(self) -> None:
        for proc in [*self.workers, *self.procs.values()]:
            proc.kill()
            proc.wait()

    @staticmethod
    def wait_for(check: Callable[[], object], timeout: float, every: float = 0.01) -> float:
        """Poll `check` until it is true; the time it became so."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise RuntimeError(f"not within {timeout} s: {check}")
            time.sleep(every)
        return time.monotonic()


def _get(url: str, path: str) -> httpx.Response | None:
    try:
        return httpx.get(url + path, timeout=1)
    except httpx.HTTPError:
        return None


def _role(url: str) -> str | None:
    answer = _get(url, "/healthz")
    return None if answer is None else str(answer.json()["role"])


def _workers(url: str) -> int:
    answer = _get(url, "/healthz")
    return 0 if answer is None else int(answer.json()["workers"])


def _dispatches(url: str) -> float:
    answer = _get(url, "/metrics")
    if answer is None or answer.status_code != 200:
        return 0.0
    return sum(float(m.group(2)) for m in _DISPATCHES.finditer(answer.text))


def failover_times(masters: Masters, client: Client, kills: int) -> list[float]:
    times = []
    for _ in range(kills):
        handle = client.submit("ledger", PARAMS)
        masters.wait_for(lambda: handle.status()["progress"]["subtasks_done"] >= 20, 60)  # noqa: B023
        standby, killed = masters.kill_active()
        dispatched = masters.wait_for(lambda: _dispatches(standby) > 0, 120)  # noqa: B023
        times.append(dispatched - killed)
        _wait_across_failover(handle)
        old = next(u for u in masters.urls if u != standby)
        masters.start_master(old)
        masters.wait_for(lambda: _role(old) == "standby", 60)  # noqa: B023
        masters.wait_for(lambda: _workers(standby) == 2, 60)  # noqa: B023
    return times


def task_wall_time(masters: Masters, client: Client, kill: bool) -> float:
    started = time.monotonic()
    handle = client.submit("ledger", PARAMS)
    if kill:
        time.sleep(1.0)
        standby, _ = masters.kill_active()
    state = _wait_across_failover(handle)
    wall = time.monotonic() - started
    assert state == "succeeded", state
    if kill:
        old = next(u for u in masters.urls if u != standby)
        masters.start_master(old)
        masters.wait_for(lambda: _role(old) == "standby", 60)
        masters.wait_for(lambda: _workers(standby) == 2, 60)
    return wall


def _wait_across_failover(handle: TaskHandle) -> str:
    """The task's final state; asked again while no master is active (between a kill and the
    take-over every master in the client's list answers 503 or not at all)."""
    deadline = time.monotonic() + 300
    while True:
        try:
            return str(handle.wait(timeout=300)["state"])
        except (ClientError, MasterUnreachable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    from tests.pgserver import PostgresServer  # the repository's root is on the path

    with PostgresServer() as server:
        yield server.create_database()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--failover-timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="herder-failover-"))
    with postgres() as db:
        masters = Masters(db, args.failover_timeout, logs)
        try:
            masters.start()
            client = Client(masters.urls)
            times = failover_times(masters, client, args.kills)
            calm = task_wall_time(masters, client, kill=False)
            killed = task_wall_time(masters, client, kill=True)
        finally:
            masters.stop()
    print(f"failover timeout {args.failover_timeout:g} s, {args.kills} kills of the active master "
          f"(logs in {logs})")
    print("kill -> first dispatch by the new active master, s: "
          + ", ".join(f"{t:.2f}" for t in times))
    print(f"  min {min(times):.2f}  median {statistics.median(times):.2f}  max {max(times):.2f}")
    print(f"task of {PARAMS['parts']} x {PARAMS['seconds']} s subtasks on 2 workers x 2 slots: "
          f"{calm:.2f} s without a kill, {killed:.2f} s with one (+{killed - calm:.2f} s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
