"""The CLI against a real master, and `herder up` as a whole, run as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from herder import Client, LocalCluster
from tests.integration.conftest import wait_until


def herder(
    cluster: LocalCluster, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERDER_URL": cluster.url}
    return subprocess.run(
        [sys.executable, "-m", "herder", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_submit_watch_prints_the_result(cluster: LocalCluster) -> None:
    out = herder(cluster, "submit", "primes", "--param", "limit=200000", "--watch")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == 17984


def test_submit_then_status_result_list(cluster: LocalCluster) -> None:
    out = herder(cluster, "submit", "noop", "--params", '{"value": [1, 2]}', "--id", "cli-1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cli-1"
    cluster.client.get("cli-1").wait(timeout=10)
    status = herder(cluster, "status", "cli-1", "--json")
    assert json.loads(status.stdout)["state"] == "succeeded"
    result = herder(cluster, "result", "cli-1")
    assert json.loads(result.stdout) == [1, 2]
    listing = herder(cluster, "list", "--type", "noop")
    assert listing.returncode == 0 and "cli-1" in listing.stdout
    assert "local-1" in herder(cluster, "workers").stdout
    assert "wordcount" in herder(cluster, "types").stdout


def test_failed_watch_exits_1_with_the_error(cluster: LocalCluster) -> None:
    out = herder(
        cluster, "submit", "sleep", "--param", "seconds=10", "--timeout", "0.3s", "--watch"
    )
    assert out.returncode == 1
    assert "timed_out" in out.stderr or "deadline" in out.stderr


def test_cancel_and_bad_input(cluster: LocalCluster) -> None:
    task_id = herder(cluster, "submit", "sleep", "--param", "seconds=30").stdout.strip()
    assert herder(cluster, "cancel", task_id).returncode == 0
    again = herder(cluster, "cancel", task_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr
    bad = herder(cluster, "submit", "primes", "--param", "limit=lots")
    assert bad.returncode == 1 and "params.limit" in bad.stderr
    missing = herder(cluster, "status", "no-such-task")
    assert missing.returncode == 1 and "not found" in missing.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_runs_master_and_workers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "herder", "up", "--workers", "2", "--slots", "2",
         "--port", str(port), "--db", str(tmp_path / "up.db")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).json()["workers"] == 2
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=30)
        with Client(url) as client:
            assert client.submit("primes", {"limit": 100_000}).result(timeout=30) == 9592
            assert sum(w["slots"] for w in client.workers()) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        output = proc.stdout.read() if proc.stdout else ""
        assert url in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # every process of the group is gone: nothing answers on the port any more
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        raise AssertionError("the master is still up after herder up stopped")
    except httpx.TransportError:
        pass
