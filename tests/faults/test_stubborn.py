"""Subtasks that ignore cancellation: in the process pool the child process is killed after the
grace; in the thread pool the thread is abandoned (reported) and its slot stays busy until the
thread really returns."""

from __future__ import annotations

import time
from pathlib import Path

from tests.faults.conftest import busy, fault_cluster, wait_until
from tests.faulttypes import read_ledger


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as dead)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def test_process_pool_kills_a_stubborn_subtask(tmp_path: Path, ledger: Path) -> None:
    grace = 0.5
    with fault_cluster(
        tmp_path, workers=1, slots=2, pool="process", worker_args=("--cancel-grace", str(grace))
    ) as cluster:
        client = cluster.client
        handle = client.submit("stubbornpid", {"seconds": 600, "parts": 2, "ledger": str(ledger)})
        rows = wait_until(
            lambda: len(read_ledger(str(ledger))) == 2 and read_ledger(str(ledger)),
            what="both subtasks started",
        )
        pids = {pid for *_, pid in rows}
        assert cluster.processes.worker_pids[0] not in pids  # they run in child processes
        started = time.monotonic()
        assert handle.cancel()["state"] == "cancelled"
        wait_until(
            lambda: not any(_alive(p) for p in pids),
            timeout=grace + 5,
            what=f"children {pids} killed",
        )
        killed = time.monotonic() - started
        wait_until(lambda: busy(client, "local-1") == 0, timeout=5, what="slots free")
        print(f"\nstubborn children killed {killed:.2f} s after the cancel (grace {grace} s)")
        assert killed < grace + 3
        assert cluster.processes.worker_pids[0] is not None  # the worker itself lives on
        assert client.submit("ledger", {"parts": 2, "salt": 1}).result(timeout=20)["n"] == 2


def test_thread_pool_abandons_a_stubborn_subtask_but_keeps_its_slot(
    tmp_path: Path, ledger: Path
) -> None:
    grace, sleep = 0.3, 4.0
    out = tmp_path / "processes.log"
    with fault_cluster(
        tmp_path, workers=1, slots=2, output=str(out), worker_args=("--cancel-grace", str(grace))
    ) as cluster:
        client = cluster.client
        handle = client.submit("stubbornpid", {"seconds": sleep, "ledger": str(ledger)})
        wait_until(lambda: read_ledger(str(ledger)), what="the subtask started")
        cancelled_at = time.monotonic()
        assert handle.cancel()["state"] == "cancelled"
        assert handle.status()["state"] == "cancelled"

        # Until the thread returns (the ledger's end line), its slot is busy, though the
        # attempt is over for the master.
        samples: list[tuple[float, int]] = []
        while True:
            at, n = round(time.monotonic() - cancelled_at, 2), busy(client, "local-1")
            # The ledger is read after `busy`: if it still has no end line, the thread was
            # running while `busy` was read (reading it first would race with the thread's end).
            if len(read_ledger(str(ledger))) >= 2:
                break
            samples.append((at, n))
            assert time.monotonic() - cancelled_at < sleep + 5, "the stubborn thread never ended"
            time.sleep(0.05)
        ended = time.monotonic() - cancelled_at
        wait_until(lambda: busy(client, "local-1") == 0, timeout=3, what="the slot freed")
        freed = time.monotonic() - cancelled_at
        print(
            f"\nthread ended {ended:.2f} s after the cancel; slot freed at {freed:.2f} s; "
            f"{len(samples)} samples of busy in between"
        )
        free_at = [t for t, n in samples if n < 1]
        assert len(samples) > 10
        assert not free_at, f"slot counted free at {free_at} s after the cancel (grace {grace} s)"
        # Reported: the worker says it abandoned the thread.
        wait_until(
            lambda: "abandon" in out.read_text(errors="replace"),
            timeout=3,
            what="the abandonment reported in the worker's log",
        )
        assert client.submit("ledger", {"parts": 2, "salt": 1}).result(timeout=20)["n"] == 2
