"""Malformed worker frames close that one connection with a reason, and nothing else."""

from __future__ import annotations

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from herder import LocalCluster
from herder.protocol import frames
from tests.integration.conftest import assert_healthy, wait_until


def _ws_url(cluster: LocalCluster) -> str:
    return cluster.url.replace("http://", "ws://") + "/api/v1/workers/connect"


def _auth(cluster: LocalCluster) -> dict[str, str]:
    """The worker token the cluster made for its workers: the channel takes no other."""
    return {"Authorization": f"Bearer {cluster.worker_token}"}


def _hello() -> bytes:
    return frames.encode(frames.Hello(name="raw", slots=1, types=["noop"]))


@pytest.mark.parametrize(
    ("first", "then", "reason"),
    [
        (b"\xc1garbage", None, "MessagePack"),
        (msgpack.packb({"t": "result"}), None, "hello"),
        (msgpack.packb([1, 2]), None, "map"),
        (msgpack.packb({"t": "hello", "name": "x", "slots": 0, "types": []}), None, "slots"),
        (None, msgpack.packb({"t": "bogus"}), "bogus"),
        (None, msgpack.packb({"t": "result", "task_id": "x", "index": -1, "attempt": 1,
                              "outcome": "ok"}), "index"),
        (None, "text frame", "binary"),
    ],
)
def test_bad_frames_close_only_that_connection(
    cluster: LocalCluster, first: bytes | None, then: bytes | str | None, reason: str
) -> None:
    client = cluster.client
    with connect(_ws_url(cluster), additional_headers=_auth(cluster)) as ws:
        ws.send(first if first is not None else _hello())
        if then is not None:
            welcome = frames.decode_master_frame(ws.recv(timeout=5))  # type: ignore[arg-type]
            assert isinstance(welcome, frames.Welcome)
            ws.send(then)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert reason in closed.value.rcvd.reason
    wait_until(lambda: len(client.workers()) == 2)
    assert_healthy(client)
    assert client.submit("noop", {"value": "still fine"}).result(timeout=10) == "still fine"


def test_a_stale_result_is_acked_and_ignored(cluster: LocalCluster) -> None:
    with connect(_ws_url(cluster), additional_headers=_auth(cluster)) as ws:
        ws.send(_hello())
        frames.decode_master_frame(ws.recv(timeout=5))  # type: ignore[arg-type]
        ws.send(
            frames.encode(
                frames.ResultFrame(task_id="ghost", index=0, attempt=1, outcome="ok", result=1)
            )
        )
        ack = frames.decode_master_frame(ws.recv(timeout=5))  # type: ignore[arg-type]
        assert isinstance(ack, frames.Ack) and ack.task_id == "ghost"
    assert_healthy(cluster.client)
