"""`herder up` and a LocalCluster's owner leave nothing behind: killed with SIGKILL, or hung up,
their master and workers stop by themselves and the port is free again (herder.lifeline)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from herder.cluster import free_port
from tests.integration.conftest import wait_until

#: long enough for the lifeline's last resort (a SIGKILL of itself) and a loaded machine
GONE_WITHIN = 15.0


def children(pid: int) -> list[int]:
    """The pids of the live processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running (an exited orphan may wait as a zombie for whoever adopted it to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def healthz(url: str) -> dict[str, object] | None:
    try:
        answer: dict[str, object] = httpx.get(f"{url}/healthz", timeout=1).json()
        return answer
    except httpx.HTTPError:
        return None


def start_up(port: int, db: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "herder", "up", "--workers", "2", "--port", str(port),
         "--db", str(db)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: (healthz(url) or {}).get("workers") == 2, timeout=60,
               what="herder up has its 2 workers")
    return proc


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def assert_all_gone(pids: list[int]) -> None:
    wait_until(lambda: not [p for p in pids if alive(p)], timeout=GONE_WITHIN,
               what=f"processes {pids} exit after their parent's death")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9", "hangup"])
def test_up_killed_leaves_no_process_and_frees_its_port(
    tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    up = start_up(port, tmp_path / "up.db")
    try:
        spawned = children(up.pid)
        assert len(spawned) == 3, f"a master and 2 workers under herder up, not {spawned}"
        up.send_signal(sig)
        assert_all_gone(spawned)
        assert up.wait(timeout=GONE_WITHIN) == (0 if sig == signal.SIGHUP else -sig)
    finally:
        stop(up)
    again = start_up(port, tmp_path / "up.db")  # the port is free, the store is not locked
    try:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0
    finally:
        stop(again)


OWNER = textwrap.dedent("""
    import json, signal, sys
    from herder import LocalCluster

    cluster = LocalCluster(workers=2, db=sys.argv[1])
    cluster.start()
    processes = cluster.processes
    print(json.dumps({"url": cluster.url,
                      "pids": [processes.master_pid, *processes.worker_pids]}), flush=True)
    signal.pause()
""")


def test_local_cluster_owner_killed_leaves_no_process(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "owned.db")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
        assert (healthz(started["url"]) or {}).get("workers") == 2
        owner.kill()
        owner.wait()
        assert_all_gone(started["pids"])
        assert healthz(started["url"]) is None
    finally:
        stop(owner)
