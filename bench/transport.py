"""The client's transport candidates, timed against a real master:

    .venv/bin/python -m bench.transport [--rounds 20] [--batch 25] [--only NAME,NAME]
                                        [--reference COMMIT]

Each candidate sends the client's two plain calls, W2's `POST /api/v1/tasks?wait=10` of a no-op
task (one round trip that ends with the task finished) and `GET /api/v1/tasks/{id}`, over a
kept-alive connection to a LocalCluster (one worker). The candidates take turns, `--batch`
calls each per turn for `--rounds` turns, in an order that rotates every turn, so that the host's
drift is shared. Printed per candidate and call: p50 and p99 of the wall time (ms) and the CPU
the calling thread spent per call (µs).

The candidates: the hand-written HTTP/1.1 client that herder had until `--reference` (its
`keepalive.py`, read from git, the reference), httpx as the client used it, httpx with a tuned
transport, an httpx transport called directly, httpcore's pools (sync and async), urllib3 and
pycurl when installed, and `herder.Client` / `herder.AsyncClient` themselves (whatever this
tree's client is). Imports herder's public API and the libraries it compares.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import socket
import statistics
import subprocess
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpcore
import httpx

from herder import LocalCluster
from herder.jsontext import compact

ROOT = Path(__file__).resolve().parents[1]
NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
HEADERS = {"Accept": "application/json", "User-Agent": "herder-bench"}
JSON = {"Content-Type": "application/json"}


class Candidate(Protocol):
    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]: ...
    def close(self) -> None: ...


class KeepAliveReference:
    """herder's former hand-written client, loaded from git at `commit`."""

    def __init__(self, url: str, commit: str) -> None:
        source = subprocess.run(
            ["git", "show", f"{commit}:src/herder/keepalive.py"], cwd=ROOT, check=True,
            capture_output=True, text=True,
        ).stdout
        module = types.ModuleType("keepalive_reference")
        exec(compile(source, "keepalive_reference.py", "exec"), module.__dict__)
        self.pool = module.KeepAlivePool(url, HEADERS, 30.0)

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        answer = self.pool.request(method, target, body=body)
        return answer.status_code, answer.content

    def close(self) -> None:
        self.pool.close()


class HttpxAsTheClientWas:
    """httpx.Client with a base URL and default headers, `json=`: what the streams used."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, headers=HEADERS, timeout=30.0)

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        response = self.http.request(method, target, json=body)
        return response.status_code, response.content

    def close(self) -> None:
        self.http.close()


class HttpxTuned:
    """httpx.Client over an HTTPTransport with TCP_NODELAY, the body encoded by the caller."""

    def __init__(self, url: str) -> None:
        self.url = url
        transport = httpx.HTTPTransport(socket_options=NODELAY)
        self.http = httpx.Client(transport=transport, headers=HEADERS, timeout=30.0)

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        content = None if body is None else compact(body).encode()
        response = self.http.request(
            method, self.url + target, content=content, headers=None if body is None else JSON
        )
        return response.status_code, response.content

    def close(self) -> None:
        self.http.close()


class HttpxTransportDirect:
    """An httpx.HTTPTransport called with httpx.Request objects, no httpx.Client around it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.transport = httpx.HTTPTransport(socket_options=NODELAY)
        self.headers = httpx.Headers(HEADERS)
        self.timeout = httpx.Timeout(30.0).as_dict()

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        headers = self.headers if body is None else {**HEADERS, **JSON}
        content = None if body is None else compact(body).encode()
        request = httpx.Request(
            method, self.url + target, headers=headers, content=content,
            extensions={"timeout": self.timeout},
        )
        response = self.transport.handle_request(request)
        try:
            return response.status_code, response.read()
        finally:
            response.close()

    def close(self) -> None:
        self.transport.close()


class Httpcore:
    """httpcore.ConnectionPool, headers as byte tuples built once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool = httpcore.ConnectionPool(socket_options=NODELAY)
        self.headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
        self.json_headers = [*self.headers, (b"Content-Type", b"application/json")]
        self.extensions = {"timeout": {"connect": 30.0, "read": 30.0, "write": 30.0,
                                       "pool": 30.0}}

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        if body is None:
            response = self.pool.request(method, self.url + target, headers=self.headers,
                                         extensions=self.extensions)
        else:
            response = self.pool.request(method, self.url + target, headers=self.json_headers,
                                         content=compact(body).encode(),
                                         extensions=self.extensions)
        return response.status, response.content

    def close(self) -> None:
        self.pool.close()


class AsyncCandidate:
    """An async client on its own event loop, its calls awaited one after the other."""

    def __init__(self, call: Callable[[str, str, Any], Any], close: Callable[[], Any]) -> None:
        self.loop = asyncio.new_event_loop()
        self._call = call
        self._close = close

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        result: tuple[int, bytes] = self.loop.run_until_complete(self._call(method, target, body))
        return result

    def timed(self, method: str, target: str, body: Any, n: int, walls: list[float]) -> None:
        """`n` calls awaited one after the other in one coroutine, each timed."""

        async def calls() -> None:
            for _ in range(n):
                start = time.perf_counter()
                status, _ = await self._call(method, target, body)
                walls.append((time.perf_counter() - start) * 1e3)
                assert status < 300, status

        self.loop.run_until_complete(calls())

    def close(self) -> None:
        self.loop.run_until_complete(self._close())
        self.loop.close()


def httpx_async(url: str) -> AsyncCandidate:
    http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(socket_options=NODELAY),
                             headers=HEADERS, timeout=30.0)

    async def call(method: str, target: str, body: Any) -> tuple[int, bytes]:
        content = None if body is None else compact(body).encode()
        response = await http.request(method, url + target, content=content,
                                      headers=None if body is None else JSON)
        return response.status_code, response.content

    return AsyncCandidate(call, http.aclose)


def httpcore_async(url: str) -> AsyncCandidate:
    pool = httpcore.AsyncConnectionPool(socket_options=NODELAY)
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    json_headers = [*headers, (b"Content-Type", b"application/json")]

    async def call(method: str, target: str, body: Any) -> tuple[int, bytes]:
        if body is None:
            response = await pool.request(method, url + target, headers=headers)
        else:
            response = await pool.request(method, url + target, headers=json_headers,
                                          content=compact(body).encode())
        return response.status, response.content

    return AsyncCandidate(call, pool.aclose)


class Urllib3:
    """urllib3's HTTPConnectionPool (sync only)."""

    def __init__(self, url: str) -> None:
        import urllib3

        self.pool = urllib3.connection_from_url(url, maxsize=1, timeout=30.0, retries=False)

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        headers = HEADERS if body is None else {**HEADERS, **JSON}
        content = None if body is None else compact(body).encode()
        response = self.pool.urlopen(method, target, body=content, headers=headers,
                                     retries=False, redirect=False)
        return response.status, response.data

    def close(self) -> None:
        self.pool.close()


class Pycurl:
    """libcurl through pycurl: one easy handle, kept (and its connection with it); sync only
    here (an asyncio client would drive a CurlMulti from the event loop)."""

    def __init__(self, url: str) -> None:
        import pycurl

        self.pycurl = pycurl
        self.url = url
        self.curl = pycurl.Curl()
        self.curl.setopt(pycurl.TCP_NODELAY, 1)
        self.headers = [f"{k}: {v}" for k, v in HEADERS.items()]
        self.json_headers = [*self.headers, "Content-Type: application/json", "Expect:"]

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        pycurl, curl = self.pycurl, self.curl
        buffer = io.BytesIO()
        curl.setopt(pycurl.URL, self.url + target)
        if body is None:
            curl.setopt(pycurl.HTTPGET, 1)
            curl.setopt(pycurl.HTTPHEADER, self.headers)
        else:
            curl.setopt(pycurl.POSTFIELDS, compact(body))
            curl.setopt(pycurl.HTTPHEADER, self.json_headers)
        curl.setopt(pycurl.WRITEDATA, buffer)
        curl.perform()
        return int(curl.getinfo(pycurl.RESPONSE_CODE)), buffer.getvalue()

    def close(self) -> None:
        self.curl.close()


class HerderClient:
    """`herder.Client` itself: W2 is `run`, the read is `get`."""

    def __init__(self, url: str) -> None:
        from herder import Client

        self.client = Client(url)

    def call(self, method: str, target: str, body: Any) -> tuple[int, bytes]:
        if method == "POST":
            self.client.run(body["type"], body["params"])
            return 201, b""
        self.client.get(target.rsplit("/", 1)[1])
        return 200, b""

    def close(self) -> None:
        self.client.close()


def herder_async(url: str) -> AsyncCandidate:
    """`herder.AsyncClient`: W2 is `run`, the read is `get`."""
    from herder import AsyncClient

    client = AsyncClient(url)

    async def call(method: str, target: str, body: Any) -> tuple[int, bytes]:
        if method == "POST":
            await client.run(body["type"], body["params"])
            return 201, b""
        await client.get(target.rsplit("/", 1)[1])
        return 200, b""

    return AsyncCandidate(call, client.aclose)


def candidates(url: str, reference: str) -> dict[str, Callable[[], Candidate]]:
    made: dict[str, Callable[[], Candidate]] = {
        "keepalive (reference)": lambda: KeepAliveReference(url, reference),
        "httpx as the client was": lambda: HttpxAsTheClientWas(url),
        "httpx tuned": lambda: HttpxTuned(url),
        "httpx transport direct": lambda: HttpxTransportDirect(url),
        "httpcore": lambda: Httpcore(url),
        "httpx async tuned": lambda: httpx_async(url),
        "httpcore async": lambda: httpcore_async(url),
        "herder.Client": lambda: HerderClient(url),
        "herder.AsyncClient": lambda: herder_async(url),
    }
    optional: dict[str, Callable[[str], Candidate]] = {"urllib3": Urllib3, "pycurl": Pycurl}
    for name, make in optional.items():
        try:
            __import__(name)
        except ImportError:
            continue
        made[name] = functools.partial(make, url)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--only", help="comma list of candidate names (substrings)")
    ap.add_argument("--reference", default="14abf5e",
                    help="the commit whose keepalive.py is the reference")
    a = ap.parse_args()
    with LocalCluster(workers=1, log_level="warning") as client:
        task_id = client.submit("noop").id
        client.get(task_id).wait(30)
        made = candidates(client.url, a.reference)
        if a.only:
            wanted = a.only.split(",")
            made = {k: v for k, v in made.items() if any(w in k for w in wanted)}
        live = {name: make() for name, make in made.items()}
        walls: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        calls = [
            ("W2 POST", "POST", "/api/v1/tasks?wait=10"),
            ("GET task", "GET", f"/api/v1/tasks/{task_id}"),
        ]
        names = list(live)
        for name in names:  # each connection open and warm before the clock starts
            for _, method, target in calls:
                live[name].call(method, target, {"type": "noop", "params": {"value": 0}}
                                if method == "POST" else None)
        for turn in range(a.rounds):
            shift = turn % len(names)
            for name in names[shift:] + names[:shift]:
                for label, method, target in calls:
                    body = {"type": "noop", "params": {"value": turn}} if method == "POST" else None
                    _batch(live[name], method, target, body, a.batch,
                           walls.setdefault((name, label), []),
                           cpus.setdefault((name, label), []))
        for candidate in live.values():
            candidate.close()
    print(f"{a.rounds} turns of {a.batch} calls per candidate and call\n")
    print("| candidate | call | p50 ms | p99 ms | client CPU µs/call |")
    print("| --- | --- | --- | --- | --- |")
    for (name, label), times in walls.items():
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        cpu = statistics.median(cpus[(name, label)])
        print(f"| {name} | {label} | {statistics.median(times):.3f} | {p99:.3f} | {cpu:.0f} |")


def _batch(candidate: Candidate, method: str, target: str, body: Any, n: int,
           walls: list[float], cpus: list[float]) -> None:
    cpu = time.thread_time()
    if isinstance(candidate, AsyncCandidate):
        candidate.timed(method, target, body, n, walls)
    else:
        for _ in range(n):
            start = time.perf_counter()
            status, _ = candidate.call(method, target, body)
            walls.append((time.perf_counter() - start) * 1e3)
            assert status < 300, status
    cpus.append((time.thread_time() - cpu) / n * 1e6)


if __name__ == "__main__":
    main()
