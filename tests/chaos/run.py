"""The chaos run: many tasks of mixed types and priorities on 3 workers while a driver kills
(SIGKILL) and restarts random workers, drains some (SIGTERM), and kills the master twice; then
it checks what must hold whatever happened:

- every acknowledged task (201, or 409 on a resubmission of an id whose first answer was lost)
  reaches a final state, and none fails (the workload itself never fails);
- every succeeded task's result equals the one computed here without herder (primes with a plain
  sieve, wordcount with collections.Counter, ledger sums with `ledger_expected`, ...);
- in the SQLite file, at most one result per (task, subtask), and exactly one per subtask of a
  succeeded task; each recorded `ledger` result comes from an attempt that the execution ledger
  shows really ran;
- the master's resident memory (VmRSS) stayed under a bound.

It prints the counts: tasks, kills, re-runs, stale messages dropped, lost-worker detection times.
`python -m tests.chaos --seed 1 --duration 300`; `run(Config(...))` from a test. Seeded: the
workload and the fault schedule follow from the seed (timing still varies from run to run).

Imports `herder` (client and LocalCluster), the fault task types and the stdlib.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herder import Client, LocalCluster
from herder.client import MasterUnreachable, QueueFull, is_final
from herder.errors import ClientError
from tests.faults.conftest import is_gone, metric, worker_named
from tests.faulttypes import ledger_expected, read_ledger

#: made-up words, drawn with Zipf-like weights so that the counts differ and ties happen too
VOCABULARY = tuple(a + b for a in "bdfgklmprst" for b in ("a", "ee", "io", "oo", "u"))
WEIGHTS = tuple(1 / (k + 1) for k in range(len(VOCABULARY)))
TYPES = ("noop", "sleep", "primes", "wordcount", "ledger")
MAX_PRIME_LIMIT = 3_000_000
COUNTERS = ("herder_stale_messages_total", "herder_retries_total", "herder_lost_workers_total")


@dataclass(frozen=True)
class Config:
    seed: int = 1
    #: seconds of faults; submissions are spread over the first 70 % of it
    duration: float = 300.0
    tasks: int = 300
    workers: int = 3
    slots: int = 2
    master_kills: int = 2
    #: seconds after the faults for every task to finish
    settle: float = 120.0
    rss_limit_mib: float = 300.0
    lease: float = 2.0
    heartbeat: float = 0.2
    workdir: str | None = None
    keep: bool = False


@dataclass(frozen=True)
class Planned:
    id: str
    type: str
    params: dict[str, Any]
    priority: int
    expected: Any


@dataclass
class Report:
    config: Config
    workdir: str = ""
    acked: int = 0
    refused: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)
    worker_kills: int = 0
    worker_drains: int = 0
    master_kills: int = 0
    master_restart_s: list[float] = field(default_factory=list)
    detection_s: list[float] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0.0))
    subtasks: int = 0
    rerun_subtasks: int = 0
    max_attempts: int = 0
    executions: int = 0
    rss_max_mib: float = 0.0
    elapsed: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        c, det = self.config, sorted(self.detection_s)
        det_text = (
            f"n={len(det)} min {det[0]:.2f} p50 {statistics.median(det):.2f} max {det[-1]:.2f} s"
            if det
            else "no samples"
        )
        return [
            f"chaos run: seed {c.seed}, duration {c.duration:g} s, {c.workers} workers x "
            f"{c.slots} slots, lease {c.lease:g} s, heartbeat {c.heartbeat:g} s; "
            f"{self.elapsed:.1f} s in all; files in {self.workdir}",
            f"tasks: {c.tasks} planned, {self.acked} acknowledged, {len(self.refused)} refused; "
            f"final states {dict(self.states)}",
            f"kills: {self.worker_kills} workers (kill -9), {self.worker_drains} drains "
            f"(SIGTERM), {self.master_kills} master (kill -9); master back in "
            + ", ".join(f"{t:.2f}" for t in self.master_restart_s)
            + " s",
            f"subtasks: {self.subtasks}, re-run (attempts > 1): {self.rerun_subtasks}, "
            f"max attempts {self.max_attempts}; ledger executions {self.executions}",
            f"stale messages dropped: {self.counters['herder_stale_messages_total']:.0f}; "
            f"retries: {self.counters['herder_retries_total']:.0f}; "
            f"lost workers: {self.counters['herder_lost_workers_total']:.0f}",
            f"lost-worker detection after kill -9: {det_text}",
            f"master VmRSS max {self.rss_max_mib:.1f} MiB (bound {c.rss_limit_mib:g} MiB)",
            "result: OK" if self.ok else f"result: {len(self.failures)} FAILED CHECK(S):",
            *(f"  - {f}" for f in self.failures[:30]),
        ]


# -- the workload and its oracle ---------------------------------------------------------------


def top_words(text: str, top: int) -> list[list[Any]]:
    counts = Counter(text.split())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [[word, n] for word, n in ranked[:top]]


def plan(config: Config, ledger: Path) -> list[Planned]:
    rng = random.Random(config.seed)
    # Longer subtasks when there is more time per task, so that the workers stay mostly busy
    # and the kills hit running work.
    scale = min(3.0, max(0.5, 2 * config.duration / max(1, config.tasks)))
    out: list[Planned] = []
    prime_limits: list[int] = []
    for i in range(config.tasks):
        kind = TYPES[i % len(TYPES)] if i < len(TYPES) else rng.choice(TYPES)
        priority = rng.choice((0, 0, 0, 1, 2, 5))
        task_id = f"chaos{config.seed}-{i:04d}"
        params: dict[str, Any]
        expected: Any
        if kind == "noop":
            params = {"value": rng.randint(0, 10**9)}
            expected = params["value"]
        elif kind == "sleep":
            seconds = round(scale * rng.uniform(0.2, 1.5), 3)
            params = {"seconds": seconds, "parts": rng.randint(1, 4)}
            expected = params["parts"]
        elif kind == "primes":
            params = {"limit": rng.randint(10_000, MAX_PRIME_LIMIT), "parts": rng.randint(1, 8)}
            prime_limits.append(params["limit"])
            expected = None  # filled below, from one sieve
        elif kind == "wordcount":
            words = rng.choices(VOCABULARY, WEIGHTS, k=rng.randint(50, 3000))
            text = "".join(w + rng.choice("  \n") for w in words)
            params = {"text": text, "parts": rng.randint(1, 6), "top": 10}
            expected = top_words(text, 10)
        else:
            params = {
                "parts": rng.randint(1, 20),
                "seconds": round(scale * rng.uniform(0.1, 1.0), 3),
                "salt": i,
                "ledger": str(ledger),
            }
            expected = ledger_expected(i, params["parts"])
        out.append(Planned(task_id, kind, params, priority, expected))
    counts = _prime_counts(prime_limits)
    return [
        Planned(p.id, p.type, p.params, p.priority, counts[p.params["limit"]])
        if p.type == "primes"
        else p
        for p in out
    ]


def _prime_counts(limits: list[int]) -> dict[int, int]:
    """Primes below each limit, from one plain sieve up to the largest."""
    if not limits:
        return {}
    top = max(limits)
    sieve = bytearray([1]) * top
    sieve[0:2] = b"\x00\x00"
    p = 2
    while p * p < top:
        if sieve[p]:
            sieve[p * p :: p] = bytes(len(range(p * p, top, p)))
        p += 1
    return {limit: sieve[:limit].count(1) for limit in set(limits)}


# -- the driver --------------------------------------------------------------------------------


class Chaos:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.faults = random.Random(config.seed + 1_000_003)
        self.report = Report(config)
        workdir = config.workdir or tempfile.mkdtemp(prefix="herder-chaos-")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.report.workdir = str(self.workdir)
        self.ledger = self.workdir / "ledger.txt"
        self.db = self.workdir / "herder.db"
        self.cluster = LocalCluster(
            workers=config.workers,
            slots=config.slots,
            tasks=("tests.faulttypes",),
            db=str(self.db),
            output=str(self.workdir / "processes.log"),
            log_level="warning",
            extra_master_args=(
                "--lease-timeout",
                str(config.lease),
                "--heartbeat",
                str(config.heartbeat),
            ),
            extra_worker_args=("--drain-timeout", "2", "--cancel-grace", "1"),
        )
        self.acked: dict[str, Planned] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- threads --

    def submit_all(self, planned: list[Planned], until: float) -> None:
        """Submit the tasks spread evenly until `until`; retry through master restarts with
        the same id, so that an acknowledgement lost in a crash is found again (409)."""
        client = Client(self.cluster.url, self.cluster.token, timeout=10)
        try:
            start = time.monotonic()
            gap = max(0.0, until - start) / max(1, len(planned))
            for n, p in enumerate(planned):
                while time.monotonic() < start + n * gap and not self._stop.is_set():
                    self._stop.wait(0.01)
                self._submit_one(client, p)
        finally:
            client.close()

    def _submit_one(self, client: Client, p: Planned) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                client.submit(p.type, p.params, priority=p.priority, id=p.id)
            except (MasterUnreachable, QueueFull):
                self._stop.wait(0.2)
                continue
            except ClientError as exc:
                if exc.status == 409:  # the first try was stored; its answer was lost
                    break
                self.report.refused.append(f"{p.id}: {exc}")
                return
            break
        else:
            self.report.refused.append(f"{p.id}: master unreachable for 120 s")
            return
        with self._lock:
            self.acked[p.id] = p

    def sample_rss(self) -> None:
        while not self._stop.wait(0.25):
            pid = self.cluster.processes.master_pid
            if pid is None:
                continue
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        mib = int(line.split()[1]) / 1024
                        self.report.rss_max_mib = max(self.report.rss_max_mib, mib)

    # -- faults --

    def _scrape(self) -> None:
        """Add the master's counters to the totals (they restart at 0 with the master)."""
        for _ in range(50):
            try:
                values = {n: metric(self.cluster.url, n, self.cluster.token) for n in COUNTERS}
            except Exception:
                time.sleep(0.1)
                continue
            for name, value in values.items():
                self.report.counters[name] += value
            return
        self.report.failures.append("could not read /metrics")

    def kill_master(self) -> None:
        self._scrape()
        self.cluster.processes.kill_master()
        self.report.master_kills += 1
        down = time.monotonic()
        self._stop.wait(self.faults.uniform(0.3, 1.5))
        self.cluster.processes.start_master()
        self.cluster.wait_ready(workers=0)
        self.report.master_restart_s.append(time.monotonic() - down)

    def worker_fault(self) -> None:
        live = [i for i, pid in enumerate(self.cluster.processes.worker_pids) if pid is not None]
        if not live:
            return
        i = self.faults.choice(live)
        roll = self.faults.random()
        if roll < 0.15:
            self.cluster.processes.stop_worker(i)
            self.report.worker_drains += 1
            if self.cluster.processes.wait_worker(i, 15) is None:
                self.report.failures.append(f"worker {i} did not exit 15 s after SIGTERM")
                self.cluster.processes.kill_worker(i)
        else:
            name = self.cluster.worker_specs[i].name
            held = self._busy(name)
            self.cluster.processes.kill_worker(i)
            killed = time.monotonic()
            self.report.worker_kills += 1
            # Wait until the master declares it lost, and time that; only for a worker that
            # held attempts (an idle one has no lease to wait for).
            if roll < 0.7 and held:
                self._time_detection(name, killed)
            self._stop.wait(self.faults.uniform(0.1, 1.5))
        self.cluster.processes.start_worker(i)

    def _busy(self, name: str) -> int:
        with contextlib.suppress(MasterUnreachable, ClientError):
            entry = worker_named(self.cluster.client, name)
            return int(entry["busy"]) if entry else 0
        return 0

    def _time_detection(self, name: str, killed: float) -> None:
        limit = self.config.lease + 5
        client = self.cluster.client
        while time.monotonic() - killed < limit:
            with contextlib.suppress(MasterUnreachable, ClientError):
                if is_gone(worker_named(client, name)):
                    self.report.detection_s.append(time.monotonic() - killed)
                    return
            time.sleep(0.01)
        self.report.failures.append(f"worker {name} not declared lost {limit} s after kill -9")

    def drive(self, end: float) -> None:
        start = time.monotonic()
        span = end - start
        n = self.config.master_kills
        master_at = [start + span * 0.9 * (k + 1) / (n + 1) for k in range(n)]
        next_fault = start + self.faults.uniform(1, 4)
        while time.monotonic() < end:
            now = time.monotonic()
            if master_at and now >= master_at[0]:
                master_at.pop(0)
                self.kill_master()
            elif now >= next_fault:
                self.worker_fault()
                next_fault = time.monotonic() + self.faults.uniform(1.5, 5)
            else:
                self._stop.wait(0.02)

    # -- the run --

    def run(self) -> Report:
        began = time.monotonic()
        planned = plan(self.config, self.ledger)
        self.cluster.start()
        threads = []
        try:
            end = time.monotonic() + self.config.duration
            submitter = threading.Thread(
                target=self.submit_all,
                args=(planned, time.monotonic() + 0.7 * self.config.duration),
                name="chaos-submit",
            )
            threads = [submitter, threading.Thread(target=self.sample_rss, name="chaos-rss")]
            for t in threads:
                t.start()
            self.drive(end)
            for i, pid in enumerate(self.cluster.processes.worker_pids):
                if pid is None:
                    self.cluster.processes.start_worker(i)
            submitter.join(timeout=self.config.settle)
            final = self.settle(time.monotonic() + self.config.settle)
            self._scrape()
        finally:
            self._stop.set()
            for t in threads:
                t.join(timeout=15)
            self.cluster.stop()
        self.check(final)
        self.report.elapsed = time.monotonic() - began
        if self.report.ok and not self.config.keep and self.config.workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.report

    def settle(self, deadline: float) -> dict[str, dict[str, Any]]:
        """Poll until every acknowledged task is final (or the deadline); the final ones, with
        the result of those that succeeded."""
        client = self.cluster.client
        final: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for task_id in [t for t in self.acked if t not in final]:
                with contextlib.suppress(MasterUnreachable, ClientError):
                    task = client.get(task_id).task or {}
                    if is_final(task):
                        if task["state"] == "succeeded":
                            task["result"] = client.get(task_id).result(timeout=5)
                        final[task_id] = task
            if len(final) == len(self.acked):
                break
            time.sleep(0.5)
        return final

    # -- the checks --

    def check(self, final: dict[str, dict[str, Any]]) -> None:
        r = self.report
        r.acked = len(self.acked)
        fail = r.failures.append
        if r.refused:
            fail(f"{len(r.refused)} submissions refused, e.g. {r.refused[0]}")
        if r.acked < self.config.tasks:
            fail(f"only {r.acked} of {self.config.tasks} tasks acknowledged")
        for task_id, p in sorted(self.acked.items()):
            task = final.get(task_id)
            if task is None:
                fail(f"{task_id} ({p.type}) not final after the settle time")
                continue
            r.states[task["state"]] += 1
            if task["state"] != "succeeded":
                fail(f"{task_id} ({p.type}) ended {task['state']}: {task.get('error')}")
            elif task["result"] != p.expected:
                fail(
                    f"{task_id} ({p.type}): result {str(task['result'])[:80]} "
                    f"!= expected {str(p.expected)[:80]}"
                )
        self._check_store(final)
        if r.rss_max_mib > self.config.rss_limit_mib:
            fail(f"master VmRSS reached {r.rss_max_mib:.1f} MiB > {self.config.rss_limit_mib}")

    def _check_store(self, final: dict[str, dict[str, Any]]) -> None:
        r, fail = self.report, self.report.failures.append
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            # (one row per subtask, by its primary key: a result is recorded at most once)
            with_result = "FROM subtasks WHERE result IS NOT NULL"
            results = Counter(t for (t,) in db.execute(f"SELECT task_id {with_result}").fetchall())
            unsucceeded = db.execute(
                f"SELECT task_id, idx, state {with_result} AND state != 'succeeded'"
            ).fetchall()
            for task_id, idx, state in unsucceeded:
                fail(f"{task_id}[{idx}]: a result recorded, but the subtask is {state}")
            totals = dict(db.execute("SELECT id, subtasks_total FROM tasks").fetchall())
            recorded = {
                (t, int(i)): int(a)
                for t, i, a in db.execute(f"SELECT task_id, idx, result_attempt {with_result}")
            }
            attempts = [int(a) for (a,) in db.execute("SELECT attempts FROM subtasks")]
        r.subtasks = len(attempts)
        r.rerun_subtasks = sum(1 for a in attempts if a > 1)
        r.max_attempts = max(attempts, default=0)
        for task_id, task in final.items():
            if task["state"] == "succeeded" and results[task_id] != totals.get(task_id):
                fail(f"{task_id}: {results[task_id]} results for {totals.get(task_id)} subtasks")
        executed: dict[tuple[str, int], set[int]] = {}
        for task_id, index, attempt, _ in read_ledger(str(self.ledger)):
            executed.setdefault((task_id, index), set()).add(attempt)
            r.executions += 1
        for task_id, p in self.acked.items():
            if p.type != "ledger" or final.get(task_id, {}).get("state") != "succeeded":
                continue
            for index in range(p.params["parts"]):
                attempt = recorded.get((task_id, index), 0)
                ran = executed.get((task_id, index), set())
                if attempt not in ran:
                    fail(
                        f"{task_id}[{index}]: recorded attempt {attempt} never ran, per the "
                        f"ledger (ran: {sorted(ran)})"
                    )


def run(config: Config) -> Report:
    return Chaos(config).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of faults")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--master-kills", type=int, default=2)
    parser.add_argument("--settle", type=float, default=120.0)
    parser.add_argument("--rss-limit-mib", type=float, default=300.0)
    parser.add_argument("--workdir", help="keep the store, ledger and logs here")
    parser.add_argument("--keep", action="store_true", help="keep the files even when it passes")
    args = parser.parse_args(argv)
    config = Config(
        seed=args.seed,
        duration=args.duration,
        tasks=args.tasks,
        workers=args.workers,
        master_kills=args.master_kills,
        settle=args.settle,
        rss_limit_mib=args.rss_limit_mib,
        workdir=args.workdir,
        keep=args.keep,
    )
    report = run(config)
    print("\n".join(report.lines()), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
