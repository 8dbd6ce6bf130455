"""Roles and tokens: every route against every role, the worker channel's own token, draining a
worker as admin, and tokens kept out of the logs (docs/security.md, "Roles and tokens")."""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from herder import AsyncClient, Client, LocalCluster
from herder.config import MasterSettings
from herder.errors import ClientError
from herder.master import build_seat
from herder.master.web import create_app
from herder.protocol import paths
from herder.protocol.redact import HIDDEN
from tests.integration.conftest import TEST_TASKS, assert_healthy, wait_until

with warnings.catch_warnings():  # its advice to install httpx2: herder's client is httpx
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient, WebSocketDenialResponse

CLIENT_TOKEN = "client-token-0123456789"
WORKER_TOKEN = "worker-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
TOKEN_OF = {"client": CLIENT_TOKEN, "worker": WORKER_TOKEN, "admin": ADMIN_TOKEN}

EVERYONE = frozenset({"none", "client", "worker", "admin"})
API = frozenset({"client", "admin"})
ADMIN = frozenset({"admin"})
WORKER = frozenset({"worker"})

#: who may use each route of the app: a new route must be added here, or the test fails
ROUTES: dict[str, frozenset[str]] = {
    paths.HEALTHZ: EVERYONE,
    paths.READYZ: EVERYONE,
    "/": EVERYONE,
    "/static": EVERYONE,
    "/static/swagger-ui": EVERYONE,
    "/docs": EVERYONE,
    "/openapi.json": EVERYONE,
    paths.TASKS: API,
    paths.TASKS_BATCH: API,
    paths.TASKS_LOOKUP: API,
    paths.TASK: API,
    paths.TASK_CANCEL: API,
    paths.TASK_RESULT: API,
    paths.TASK_LOGS: API,
    paths.TASK_SUBTASKS: API,
    paths.TASK_EVENTS: API,
    paths.EVENTS: API,
    paths.SCHEDULES: API,
    paths.SCHEDULE: API,
    paths.STATS: API,
    paths.WORKERS: API,
    paths.TYPES: API,
    paths.METRICS: API,
    paths.WORKER_DRAIN: ADMIN,
    paths.WORKER_CHANNEL: WORKER,
}


def _headers(who: str) -> dict[str, str]:
    # with a granted token a stream of events would not end: a bad Last-Event-ID ends it in 422
    headers = {"Last-Event-ID": "none"}
    if who == "wrong":
        headers["Authorization"] = "Bearer not-any-of-the-tokens"
    elif who != "none":
        headers["Authorization"] = f"Bearer {TOKEN_OF[who]}"
    return headers


def test_every_route_against_every_role(tmp_path: Path) -> None:
    settings = MasterSettings(
        db=str(tmp_path / "h.db"), token=CLIENT_TOKEN, worker_token=WORKER_TOKEN,
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(build_seat(settings))
    seen: dict[str, list[tuple[str, str, int]]] = {}
    with TestClient(app, base_url="http://127.0.0.1") as http:
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            assert isinstance(route, Route | WebSocketRoute | Mount), route
            assert route.path in ROUTES, f"{route.path}: add it to ROUTES, with its roles"
            allowed = ROUTES[route.path]
            if isinstance(route, WebSocketRoute):
                seen[route.path] = _check_channel(http, route.path, allowed)
                continue
            methods = ["GET"] if isinstance(route, Mount) else sorted(route.methods or ())
            path = f"{route.path}/index.html" if isinstance(route, Mount) else route.path
            for method in methods:
                seen.setdefault(route.path, []).extend(_check_http(http, method, path, allowed))
    assert set(seen) == set(ROUTES)  # every route of the table is one of the app's


def _check_http(
    http: TestClient, method: str, template: str, allowed: frozenset[str]
) -> list[tuple[str, str, int]]:
    path = re.sub(r"\{[^}]+\}", "x", template)
    answers = []
    for who in (*sorted(EVERYONE), "wrong"):
        r = http.request(method, path, headers=_headers(who))
        answers.append((method, who, r.status_code))
        if who in allowed or "none" in allowed:  # a public path ignores any token
            assert r.status_code not in (401, 403), (method, path, who, r.text)
        elif who in ("none", "wrong"):
            assert r.status_code == 401, (method, path, who, r.text)
            assert "token" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
        else:  # a valid token of a role that does not grant this route
            assert r.status_code == 403, (method, path, who, r.text)
            detail = r.json()["detail"]
            assert f"the {who} token" in detail and "needs the" in detail, detail
    return answers


def _check_channel(
    http: TestClient, path: str, allowed: frozenset[str]
) -> list[tuple[str, str, int]]:
    answers = []
    url = f"ws://127.0.0.1{path}"  # a Host the master allows (the test client's is another)
    for who in (*sorted(EVERYONE), "wrong"):
        if who in allowed:
            with http.websocket_connect(url, headers=_headers(who)) as ws:
                ws.close()
            answers.append(("WS", who, 101))
            continue
        with pytest.raises(WebSocketDenialResponse) as denied, http.websocket_connect(
            url, headers=_headers(who)
        ):
            pass
        status = denied.value.status_code
        answers.append(("WS", who, status))
        assert status == (401 if who in ("none", "wrong") else 403), (who, status)
        assert "worker" in denied.value.json()["detail"]
    return answers


# -- real processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three distinct tokens, the worker one made by the cluster; everything at debug level."""
    log = tmp_path_factory.mktemp("roles") / "cluster.log"
    c = LocalCluster(
        workers=2, slots=1, tasks=TEST_TASKS, token=CLIENT_TOKEN, admin_token=ADMIN_TOKEN,
        log_level="debug", output=str(log),
    )
    with c:
        yield c


def _log_of(cluster: LocalCluster) -> str:
    assert cluster.output is not None
    return Path(cluster.output).read_text(errors="replace")


def test_workers_of_a_cluster_get_a_worker_token_of_their_own(roles: LocalCluster) -> None:
    assert roles.worker_token not in (CLIENT_TOKEN, ADMIN_TOKEN)
    assert len(roles.worker_token) >= 16
    assert roles.client.submit("noop", {"value": 7}).result(timeout=10) == 7
    channel = roles.url.replace("http://", "ws://") + paths.WORKER_CHANNEL
    for token in (CLIENT_TOKEN, ADMIN_TOKEN):
        with pytest.raises(InvalidStatus) as refused:
            connect(channel, additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=10)
        assert refused.value.response.status_code == 403
    worker_auth = {"Authorization": f"Bearer {roles.worker_token}"}
    with httpx.Client(base_url=roles.url, timeout=10) as http:
        assert http.get(paths.HEALTHZ, headers=worker_auth).status_code == 200
        for path in (paths.TASKS, paths.WORKERS, paths.METRICS):
            r = http.get(path, headers=worker_auth)
            assert r.status_code == 403 and "worker channel" in r.json()["detail"]
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert http.get(paths.TASKS, headers=admin).status_code == 200
    assert_healthy(roles.client)


def test_no_token_in_the_debug_logs(roles: LocalCluster) -> None:
    assert roles.client.submit("noop", {"value": 1}).result(timeout=10) == 1
    with httpx.Client(base_url=roles.url, timeout=10) as http:
        # a refused request and a refused channel are logged too
        http.get(paths.TASKS, headers={"Authorization": f"Bearer {roles.worker_token}"})
    text = _log_of(roles)
    assert "DEBUG" in text
    # the handshakes' headers were logged (by both ends), with the token hidden
    assert re.search(rf"> authorization: {re.escape(HIDDEN)}", text, re.I), "worker side"
    assert re.search(rf"< authorization: {re.escape(HIDDEN)}", text, re.I), "master side"
    for token in (CLIENT_TOKEN, ADMIN_TOKEN, roles.worker_token):
        assert token not in text


def test_an_admin_drains_a_worker(roles: LocalCluster) -> None:
    client = roles.client  # the client token: may not drain
    with pytest.raises(ClientError) as refused:
        client.drain_worker("local-1")
    assert refused.value.status == 403

    async def drain_missing() -> ClientError:
        async with AsyncClient(roles.url, ADMIN_TOKEN) as admin:
            with pytest.raises(ClientError) as missing:
                await admin.drain_worker("no-such-worker")
            return missing.value

    missing = asyncio.run(drain_missing())
    assert missing.status == 404 and "no-such-worker" in missing.message
    with Client(roles.url, ADMIN_TOKEN) as admin:
        running = admin.submit("sleep", {"seconds": 2, "parts": 2})
        wait_until(lambda: sum(w["busy"] for w in admin.workers()) == 2)
        (asked,) = admin.drain_worker("local-1")
        assert (asked["name"], asked["state"]) == ("local-1", "draining")
        # it finished what it ran, then stopped
        assert roles.processes.wait_worker(0, timeout=30) == 0
        assert running.wait(timeout=30)["state"] == "succeeded"
        wait_until(lambda: [w["name"] for w in admin.workers()] == ["local-2"])
        assert admin.submit("noop", {"value": 2}).result(timeout=10) == 2
    roles.processes.start_worker(0)
    roles.wait_ready(workers=2)


def test_a_master_without_tokens_says_anyone_local_may_use_it(tmp_path: Path) -> None:
    log = tmp_path / "open.log"
    with LocalCluster(workers=1, tasks=TEST_TASKS, output=str(log)) as client:
        assert client.submit("noop", {"value": 1}).result(timeout=10) == 1
    assert "any local user" in log.read_text(errors="replace")
