"""Retention against real processes: `--keep-finished` prunes finished tasks while the master
keeps dispatching, and `DELETE /api/v1/tasks/{id}` (the client's `delete`, `herder delete`)
deletes a finished task at once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from herder import AsyncClient, Client, LocalCluster
from herder.client.errors import ClientError
from herder.protocol import paths
from tests.integration.conftest import TEST_TASKS, wait_until
from tests.integration.test_cli import herder


def _gone(client: Client, task_id: str) -> bool:
    try:
        client.get(task_id)
    except ClientError as exc:
        return exc.status == 404
    return False


def _rows_of(db: Path, task_ids: list[str]) -> dict[str, int]:
    """Rows left of these tasks in each table of the master's SQLite file."""
    marks = ", ".join("?" * len(task_ids))
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})",
                                task_ids).fetchone()[0]
            for table, column in (("tasks", "id"), ("subtasks", "task_id"), ("logs", "task_id"))
        }


def test_a_master_prunes_finished_tasks_while_it_keeps_dispatching(tmp_path: Path) -> None:
    db = tmp_path / "prune.db"
    with LocalCluster(workers=1, slots=2, tasks=TEST_TASKS, db=str(db),
                      extra_master_args=["--keep-finished", "2s"]) as client:
        first = [client.submit("logs", {"n": i}) for i in range(20)]
        client.gather(first, timeout=30)
        first_ids = [h.id for h in first]
        assert _rows_of(db, first_ids)["logs"] > 0
        # unfinished all along: older than any cutoff, never pruned
        slow = client.submit("sleep", {"seconds": 60})

        # the master keeps taking and running tasks while it deletes the first ones
        later: list[str] = []

        def first_pruned() -> bool:
            handle = client.submit("noop", {"value": len(later)})
            later.append(handle.id)
            assert handle.wait(timeout=30)["state"] == "succeeded"
            return all(_gone(client, task_id) for task_id in first_ids)

        wait_until(first_pruned, timeout=30, interval=0.1, what="the first tasks pruned")
        assert _rows_of(db, first_ids) == {"tasks": 0, "subtasks": 0, "logs": 0}
        for task_id in first_ids[:3]:
            with pytest.raises(ClientError) as missing:
                client.get(task_id).subtasks()
            assert missing.value.status == 404
        assert slow.status()["state"] == "running"
        assert _rows_of(db, [slow.id])["tasks"] == 1
        assert len(later) >= 2
        slow.cancel()


def test_delete_answers_204_then_404_and_409_for_an_unfinished_task(
    cluster: LocalCluster,
) -> None:
    client = cluster.client
    done = client.submit("logs", {"n": 1})
    done.wait(timeout=30)
    running = client.submit("sleep", {"seconds": 30})
    wait_until(lambda: running.status()["state"] == "running", what="the sleep running")
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=cluster.url, headers=headers) as http:
        answer = http.delete(paths.TASK.format(task_id=done.id))
        assert (answer.status_code, answer.content) == (204, b"")
        for path in (paths.TASK, paths.TASK_LOGS, paths.TASK_SUBTASKS, paths.TASK_RESULT):
            assert http.get(path.format(task_id=done.id)).status_code == 404, path
        assert http.delete(paths.TASK.format(task_id=done.id)).status_code == 404
        refused = http.delete(paths.TASK.format(task_id=running.id))
        assert refused.status_code == 409
        assert "only a finished task can be deleted" in refused.json()["detail"]
        assert http.delete(paths.TASK.format(task_id="no-such-task")).status_code == 404
    assert running.status()["state"] == "running"  # untouched
    running.cancel()
    running.wait(timeout=30)
    running.delete()
    assert _gone(client, running.id)


def test_the_clients_delete_and_its_errors(cluster: LocalCluster) -> None:
    client = cluster.client
    handle = client.submit("noop", {"value": 1})
    handle.wait(timeout=30)
    client.delete(handle.id)
    assert _gone(client, handle.id)
    with pytest.raises(ClientError) as again:
        client.delete(handle.id)
    assert again.value.status == 404
    # the connection that sent the DELETE reads with GET again (the method does not stick)
    assert client.get(client.submit("noop", {"value": 2}).id).wait(timeout=30)["result"]

    async def async_delete() -> None:
        async with AsyncClient(cluster.url) as aclient:
            task = await aclient.submit("sleep", {"seconds": 30})
            with pytest.raises(ClientError) as unfinished:
                await task.delete()
            assert unfinished.value.status == 409
            await task.cancel()
            await task.wait(timeout=30)
            await task.delete()
            with pytest.raises(ClientError) as missing:
                await aclient.get(task.id)
            assert missing.value.status == 404

    asyncio.run(async_delete())


def test_cli_delete(cluster: LocalCluster) -> None:
    task_id = herder(cluster, "submit", "noop", "--param", "value=1").stdout.strip()
    cluster.client.get(task_id).wait(timeout=30)
    deleted = herder(cluster, "delete", task_id)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"{task_id} deleted"
    again = herder(cluster, "delete", task_id)
    assert again.returncode == 1 and "not found" in again.stderr
    running = herder(cluster, "submit", "sleep", "--param", "seconds=30").stdout.strip()
    refused = herder(cluster, "delete", running)
    assert refused.returncode == 1 and "only a finished task can be deleted" in refused.stderr
    herder(cluster, "cancel", running)
