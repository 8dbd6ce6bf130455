"""The client over `https://`: a real master behind a TLS-terminating test server, with a
certificate the test makes (trustme). With the right CA (given, or from HERDER_CA) calls and
streams work; with another CA, or the system's store, the certificate is refused, clearly."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from herder import AsyncClient, Client, LocalCluster
from herder.client import MasterUnreachable
from tests.tlsfiles import SERVER_NAMES, write_ca

TEST_TASKS = ("tests.tasktypes",)


class TLSTerminator:
    """Accepts TLS on a loopback port and forwards the plain bytes to `upstream` (host, port):
    what a reverse proxy in front of a master does."""

    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self._context = context
        self._upstream = upstream
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> TLSTerminator:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self._server = future.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            master_r, master_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(_pump(client_r, master_w), _pump(master_r, client_w))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, ssl.SSLError):
        writer.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def https_url(ca: trustme.CA) -> Iterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*SERVER_NAMES).configure_cert(context)
    cluster = LocalCluster(workers=1, tasks=TEST_TASKS)
    with cluster:
        assert cluster.port is not None
        with TLSTerminator(context, ("127.0.0.1", cluster.port)) as tls:
            yield f"https://localhost:{tls.port}"


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_ca(ca, tmp_path_factory.mktemp("tls") / "ca.pem")


def test_calls_and_streams_over_https_with_the_right_ca(https_url: str, ca_file: str) -> None:
    with Client(https_url, ca=ca_file) as client:
        assert client.health()["status"] == "ok"
        assert client.run("noop", {"value": 5}) == 5
        handle = client.submit("noop", {"value": 6})
        kinds = [event.kind for event in handle.events()]
        assert kinds[0] == "snapshot" and handle.result(timeout=30) == 6
        handles = client.submit_many([{"type": "noop", "params": {"value": i}} for i in range(20)])
        assert client.gather(handles, timeout=30) == list(range(20))


def test_the_ca_file_may_come_from_the_environment(
    https_url: str, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERDER_CA", ca_file)

    async def main() -> int:
        async with AsyncClient(https_url) as client:
            return int(await client.run("noop", {"value": 7}))

    assert asyncio.run(main()) == 7


def test_another_ca_is_refused_clearly(https_url: str, tmp_path: Path) -> None:
    stranger = write_ca(trustme.CA(), tmp_path / "other-ca.pem")
    with (
        Client(https_url, ca=stranger) as client,
        pytest.raises(MasterUnreachable, match="CERTIFICATE_VERIFY_FAILED") as caught,
    ):
        client.health()
    assert "HERDER_CA" in str(caught.value)


def test_the_system_store_refuses_a_private_ca(
    https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HERDER_CA", raising=False)
    with Client(https_url) as client, pytest.raises(MasterUnreachable, match="certificate"):
        client.health()


def test_a_ca_file_that_does_not_exist_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pem"):
        Client("https://localhost:1", ca=str(tmp_path / "nope.pem"))
