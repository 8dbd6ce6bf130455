"""Garbage on the worker channel closes only the connection that sent it: a real worker keeps
getting its work done meanwhile, and no other task's log lines or final state are lost."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator

import httpx
import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from herder import Client, LocalCluster
from herder.protocol import frames, paths
from tests.integration.conftest import TEST_TASKS, assert_healthy

HELLO = frames.encode(frames.Hello(name="raw", slots=1, types=["noop"]))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=2, tasks=TEST_TASKS)
    with c:
        yield c


def _garbage(rng: random.Random) -> list[bytes | str]:
    """What one raw connection sends: with or without a hello first, then something bad."""
    log = {"t": "log", "task_id": "x", "index": 0, "attempt": 1, "ts": 1.0, "level": "INFO",
           "message": "m"}
    bad: list[bytes | str] = [
        rng.randbytes(rng.randint(1, 300)),
        b"\x91" * 100_000 + b"\xc0",
        b"\xdd\xff\xff\xff\xff",
        msgpack.packb({**log, "ts": math.nan}),
        msgpack.packb({**log, "index": 2**63}),
        msgpack.packb({**log, "attempt": "one"}),
        msgpack.packb({k: v for k, v in log.items() if k != "task_id"}),
        msgpack.packb([log] * 3 + [{"t": "nope"}]),
        "text, not binary",
    ]
    choice = rng.choice(bad)
    return [HELLO, choice] if rng.random() < 0.7 else [choice]


def _send_and_be_closed(cluster: LocalCluster, messages: list[bytes | str]) -> str:
    """Send `messages` on a raw connection with the worker token; the reason it was closed."""
    url = cluster.url.replace("http://", "ws://") + paths.WORKER_CHANNEL
    auth = {"Authorization": f"Bearer {cluster.worker_token}"}
    with connect(url, open_timeout=10, max_size=None, additional_headers=auth) as ws:
        for message in messages:
            ws.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.reason


def test_garbage_connections_while_a_real_worker_works(cluster: LocalCluster) -> None:
    client: Client = cluster.client
    handles = [client.submit("logs", {"n": i}) for i in range(20)]
    rng = random.Random(20)
    reasons = [_send_and_be_closed(cluster, _garbage(rng)) for _ in range(60)]
    assert all(reason for reason in reasons)  # each closed with why
    assert [h.result(timeout=30) for h in handles] == [[{"n": i}] for i in range(20)]
    for handle in handles:
        assert [line["message"] for line in handle.logs()][-2:] == ["halfway there", "done"]
    # the raw connections that said hello are listed until their lease ends; the real one works
    assert "local-1" in [w["name"] for w in client.workers()]
    assert client.submit("noop", {"value": "after"}).result(timeout=30) == "after"
    assert_healthy(client)


@pytest.mark.parametrize(("field", "value"), [("ts", math.nan), ("ts", math.inf),
                                              ("ts", -math.inf), ("index", 2**63)])
def test_a_log_frame_out_of_bounds_loses_no_other_record(
    cluster: LocalCluster, field: str, value: float
) -> None:
    client: Client = cluster.client
    target = client.submit("sleep", {"seconds": 0.2})
    others = [client.submit("logs", {"n": i}) for i in range(10)]
    bad = {"t": "log", "task_id": target.id, "index": 0, "attempt": 1, "ts": 1.0,
           "level": "INFO", "message": "forged", field: value}
    reason = _send_and_be_closed(cluster, [HELLO, msgpack.packb(bad)])
    assert field in reason
    for handle in others:  # their lines and final states, stored in the same batches
        handle.result(timeout=30)
        assert len(handle.logs()) == 3
        assert handle.wait(timeout=10)["state"] == "succeeded"
    target.result(timeout=30)
    r = httpx.get(f"{cluster.url}/api/v1/tasks/{target.id}/logs", timeout=10)
    assert r.status_code == 200
    lines = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"{c} in the answer"))
    assert all(line["message"] != "forged" for line in lines["logs"])
    assert_healthy(client)
