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
import pytest

from herder import Client, LocalCluster
from herder.client.errors import ClientError, QueueFull
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


def test_schedule_add_list_rm(cluster: LocalCluster) -> None:
    added = herder(cluster, "schedule", "add", "cli-nightly", "noop", "--cron", "0 3 * * *",
                   "-p", "value=7", "--timezone", "Europe/Berlin", "--overlap", "allow")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("cli-nightly: next run ")
    again = herder(cluster, "schedule", "add", "cli-nightly", "noop", "--every", "5m")
    assert again.returncode == 1 and "already exists" in again.stderr
    both = herder(cluster, "schedule", "add", "x", "noop", "--every", "5m", "--cron", "* * * * *")
    assert both.returncode != 0 and "exactly one" in both.stderr
    bad = herder(cluster, "schedule", "add", "x", "noop", "--every", "soon")
    assert bad.returncode == 1 and "every" in bad.stderr
    listing = herder(cluster, "schedule", "list", "--json")
    (view,) = json.loads(listing.stdout)
    assert (view["id"], view["cron"], view["timezone"], view["params"], view["overlap"]) == (
        "cli-nightly", "0 3 * * *", "Europe/Berlin", {"value": 7}, "allow"
    )
    assert "cli-nightly" in herder(cluster, "schedule", "list").stdout
    assert herder(cluster, "schedule", "rm", "cli-nightly").returncode == 0
    gone = herder(cluster, "schedule", "rm", "cli-nightly")
    assert gone.returncode == 1 and "not found" in gone.stderr
    assert cluster.client.schedules.list() == []


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


def test_up_hands_the_limits_allowed_hosts_and_retention_to_its_master(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "herder", "up", "--workers", "1", "--slots", "1",
         "--port", str(port), "--db", str(tmp_path / "up.db"),
         "--max-body", "65536", "--max-params", "2048", "--max-subtasks-per-task", "5",
         "--max-pending-subtasks", "10", "--allowed-hosts", "herder.test",
         "--keep-finished", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # its worker joined at 127.0.0.1, which `up` allows beside the names it was given
        wait_until(lambda: _healthy_workers(url) == 1, timeout=30, what="up's worker joins")
        assert httpx.get(f"{url}/healthz", headers={"Host": "herder.test"}).status_code == 200
        wrong = httpx.get(f"{url}/healthz", headers={"Host": "elsewhere.test"})
        assert wrong.status_code == 400 and "--allowed-hosts" in wrong.json()["detail"]
        too_long = httpx.post(f"{url}/api/v1/tasks", content=b" " * 70_000,
                              headers={"Content-Type": "application/json"})
        assert too_long.status_code == 413 and "--max-body" in too_long.json()["detail"]
        with Client(url) as client:
            with pytest.raises(ClientError) as big_params:
                client.submit("sleep", {"seconds": 0, "pad": "x" * 3000})
            assert big_params.value.status == 413 and "--max-params" in big_params.value.message
            _assert_split_refused(client)
            held = [client.submit("sleep", {"seconds": 60, "parts": 5}) for _ in range(2)]
            wait_until(lambda: all(h.status()["progress"]["subtasks_total"] == 5 for h in held))
            with pytest.raises(QueueFull) as full:
                client.submit("sleep", {"seconds": 60})
            assert "--max-pending-subtasks of 10" in full.value.message
            for h in held:
                h.cancel()
            # cancelled, they are finished: pruned a second later
            wait_until(lambda: not client.list_tasks(), timeout=30, what="tasks pruned")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _healthy_workers(url: str) -> int:
    try:
        return int(httpx.get(f"{url}/healthz", timeout=1).json()["workers"])
    except httpx.HTTPError:
        return -1


def _assert_split_refused(client: Client) -> None:
    """Six parts over --max-subtasks-per-task of 5: a 422 when the split runs at submission,
    else the task fails; either names the limit."""
    try:
        handle = client.submit("sleep", {"seconds": 0, "parts": 6})
    except ClientError as exc:
        assert exc.status == 422 and "--max-subtasks-per-task of 5" in exc.message
        return
    task = handle.wait(timeout=30)
    assert task["state"] == "failed"
    assert "--max-subtasks-per-task of 5" in str(task["error"])
