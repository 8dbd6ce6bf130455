"""Each worker owns its attempts: what a second connection holding the worker token sends about
another worker's attempts is refused and counted, and a legit reconnect keeps its own, after a
master restart too. A WebSocket upgrade from a web page (with an `Origin`) is refused before the
channel opens.

Real master and worker processes; the second connection is a raw WebSocket client.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import sqlite3
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from herder import Client, LocalCluster
from herder.protocol import frames, paths
from tests.integration.conftest import TEST_TASKS, assert_healthy, wait_until

TOKEN = secrets.token_hex(16)
T = TypeVar("T")


class Raw:
    """A raw connection to the worker channel, with the frames received and not yet read."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._unread: deque[frames.MasterFrame] = deque()

    def send(self, frame: frames.Encodable) -> None:
        self.ws.send(frames.encode(frame))

    def next(self, kind: type[T]) -> T:
        """The next frame of `kind` the master sends (frames before it are skipped)."""
        while True:
            while self._unread:
                frame = self._unread.popleft()
                if isinstance(frame, kind):
                    return frame
            message = self.ws.recv(timeout=10)
            assert isinstance(message, bytes)
            self._unread.extend(frames.decode_master_frames(message))

    def hello(self, **fields: object) -> frames.Welcome:
        self.send(frames.Hello(slots=1, **fields))
        return self.next(frames.Welcome)


@contextlib.contextmanager
def _connect(cluster: LocalCluster, origin: str | None = None) -> Iterator[Raw]:
    """A raw connection to the worker channel, with the cluster's worker token."""
    url = cluster.url.replace("http://", "ws://") + paths.WORKER_CHANNEL
    headers = {"Authorization": f"Bearer {cluster.worker_token}"}
    with connect(url, additional_headers=headers, origin=Origin(origin) if origin else None) as ws:
        yield Raw(ws)


def _stored_uid(db: str, task_id: str) -> str | None:
    """The worker uid the store keeps for the task's first subtask, once committed."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT worker_uid FROM subtasks WHERE task_id = ? AND idx = 0", (task_id,)
        ).fetchone()
    return row[0] if row else None


def _refused(client: Client) -> dict[str, float]:
    """herder_refused_worker_messages_total by kind."""
    text = httpx.get(
        f"{client.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).text
    return {
        s.labels["kind"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "herder_refused_worker_messages_total"
    }


def test_forged_results_logs_progress_and_claims_are_refused_and_counted(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cluster = LocalCluster(workers=1, slots=1, tasks=TEST_TASKS, token=TOKEN)
    with cluster as client:
        handle = client.submit("gated", {"gate": str(gate), "parts": 3})
        (running,) = wait_until(
            lambda: [s for s in handle.subtasks() if s["state"] == "running"], what="a part runs"
        )
        queued = [s["index"] for s in handle.subtasks() if s["state"] == "queued"]
        assert len(queued) == 2  # one slot, nothing sent ahead
        real = frames.AttemptRef(
            task_id=handle.id, index=running["index"], attempt=running["attempts"]
        )
        claims = [
            frames.AttemptRef(task_id=handle.id, index=i, attempt=a) for i in queued for a in (1, 2)
        ]
        with _connect(cluster) as ws:
            welcome = ws.hello(
                name="forger", types=["noop"], running=claims[:2], results=[real, *claims[2:]]
            )
            assert welcome.keep == []
            ref = real.model_dump()
            ws.send(frames.ResultFrame(**ref, outcome="ok", result="forged"))
            ws.send(frames.LogFrame(**ref, ts=time.time(), level="ERROR", message="forged line"))
            ws.send(frames.ProgressFrame(**ref, done=1.0, total=1.0, message="forged"))
            wait_until(
                lambda: _refused(client)
                == {"hello": 5.0, "result": 1.0, "log": 1.0, "progress": 1.0},
                what="every forged message refused and counted",
            )
            (sub,) = [s for s in handle.subtasks() if s["index"] == real.index]
            assert sub["state"] == "running" and sub["message"] != "forged"
            gate.touch()
            assert handle.result(timeout=30) == ["ran 0", "ran 1", "ran 2"]
        assert "forger" not in {s["worker"] for s in handle.subtasks()}
        assert [s["attempts"] for s in handle.subtasks()] == [1, 1, 1]
        lines = handle.logs()
        assert "forged line" not in [line["message"] for line in lines]
        assert [line["message"] for line in lines if line["level"] == "INFO"].count(
            "waiting at the gate"
        ) == 3
        assert_healthy(client)


def test_a_worker_that_reconnects_keeps_its_attempt_and_a_namesake_cannot_take_it() -> None:
    cluster = LocalCluster(workers=0, tasks=TEST_TASKS, token=TOKEN)
    with cluster as client:
        handle = client.submit("noop", {"value": 1})
        me = {"name": "raw", "types": ["noop"], "uid": "uid-of-raw"}
        with _connect(cluster) as ws:
            ws.hello(**me)
            assign = ws.next(frames.Assign)
        ref = frames.AttemptRef(task_id=assign.task_id, index=assign.index, attempt=assign.attempt)
        # another connection with the same name but not the same uid claims it: refused
        with _connect(cluster) as ws:
            namesake = ws.hello(name="raw", types=["noop"], uid="guessed", running=[ref])
            assert namesake.keep == []
        assert _refused(client) == {"hello": 1.0}
        with _connect(cluster) as ws:
            again = ws.hello(**me, running=[ref])
            assert again.keep == [ref]
            ws.send(frames.ResultFrame(**ref.model_dump(), outcome="ok", result="mine"))
            ack = ws.next(frames.Ack)
            assert (ack.task_id, ack.index, ack.attempt) == (ref.task_id, ref.index, ref.attempt)
        assert handle.result(timeout=10) == "mine"
        assert _refused(client) == {"hello": 1.0}


def test_after_a_master_restart_only_the_worker_of_the_stored_uid_claims_its_attempt(
    tmp_path: Path,
) -> None:
    # The store knows the worker's name and uid for its running attempt: a connection that
    # knows the name but not the uid claims it first, and is refused; the real worker comes
    # back and its result counts, the attempt running once.
    gate = tmp_path / "gate"
    cluster = LocalCluster(
        workers=1, tasks=TEST_TASKS, token=TOKEN, extra_master_args=["--lease-timeout", "60"]
    )
    with cluster as client:
        handle = client.submit("gated", {"gate": str(gate)})
        (running,) = wait_until(
            lambda: [s for s in handle.subtasks() if s["state"] == "running"], what="it runs"
        )
        ref = frames.AttemptRef(task_id=handle.id, index=0, attempt=running["attempts"])
        # the start is committed with the worker's uid, as a digest (a reader of the store
        # cannot pose as the worker)
        stored_uid = wait_until(lambda: _stored_uid(str(cluster.db), handle.id), what="stored")
        assert re.fullmatch("[0-9a-f]{64}", stored_uid)
        (worker,) = cluster.processes.workers
        # the worker is held still, so that the namesake claims before it can reconnect
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            cluster.processes.kill_master()
            cluster.processes.start_master()
            cluster.wait_ready(workers=0)
            with _connect(cluster) as ws:
                namesake = ws.hello(
                    name=running["worker"], types=["gated"], uid="guessed", running=[ref]
                )
                assert namesake.keep == []
            assert _refused(client) == {"hello": 1.0}
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        wait_until(
            lambda: [
                w for w in client.workers()
                if w["name"] == running["worker"] and w["state"] == "active" and w["busy"] == 1
            ],
            what="the real worker is back with its attempt",
        )
        gate.touch()
        assert handle.result(timeout=30) == ["ran 0"]
        (sub,) = handle.subtasks()
        assert (sub["attempts"], sub["worker"]) == (running["attempts"], running["worker"])
        assert _refused(client) == {"hello": 1.0}
        assert_healthy(client)


def test_an_upgrade_from_a_web_page_is_refused() -> None:
    cluster = LocalCluster(workers=1, tasks=TEST_TASKS, token=TOKEN)
    with cluster as client:
        with pytest.raises(InvalidStatus) as refused, _connect(cluster, origin="http://evil.example"):
            pass
        assert refused.value.response.status_code == 403
        assert b"Origin" in refused.value.response.body
        # herder's own worker sends no Origin: it joined, and runs tasks
        assert client.submit("noop", {"value": 2}).result(timeout=10) == 2
