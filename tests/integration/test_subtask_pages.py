"""`GET /tasks/{id}/subtasks` answers a page at a time, and the client follows the pages: on a
real master with real workers, for a finished task (read from the store) and a running one (with
what the master holds of its running parts)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from herder import AsyncClient, Client, LocalCluster, TaskHandle
from tests.integration.conftest import assert_healthy, wait_until

PARTS = 2500


@pytest.fixture(scope="module")
def http(cluster: LocalCluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=10) as h:
        yield h


@pytest.fixture(scope="module")
def finished(client: Client) -> TaskHandle:
    """A task of 2,500 subtasks that has finished."""
    handle = client.submit("echo", {"items": list(range(PARTS))})
    assert handle.wait(timeout=120)["state"] == "succeeded"
    return handle


def subtasks_path(handle: TaskHandle) -> str:
    return f"/api/v1/tasks/{handle.id}/subtasks"


def test_2500_subtasks_come_in_three_pages_of_1000(
    http: httpx.Client, finished: TaskHandle
) -> None:
    pages: list[list[int]] = []
    cursors: list[str | None] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor is not None:
            params["cursor"] = cursor
        answer = http.get(subtasks_path(finished), params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages.append([s["index"] for s in page["subtasks"]])
        assert all(s["state"] == "succeeded" for s in page["subtasks"])
        cursor = page["next_cursor"]
        cursors.append(cursor)
        if cursor is None:
            break
        assert len(pages) < 4, "more pages than 2,500 subtasks make"
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert [i for p in pages for i in p] == list(range(PARTS))
    assert cursors == ["999", "1999", None]


def test_the_default_page_is_1000_and_a_cursor_past_the_end_reads_an_empty_last_page(
    http: httpx.Client, finished: TaskHandle
) -> None:
    page = http.get(subtasks_path(finished)).json()
    assert (len(page["subtasks"]), page["next_cursor"]) == (1000, "999")
    whole = http.get(subtasks_path(finished), params={"limit": 10_000}).json()
    assert (len(whole["subtasks"]), whole["next_cursor"]) == (PARTS, None)
    for cursor in ("2499", "9" * 19):
        past = http.get(subtasks_path(finished), params={"cursor": cursor}).json()
        assert past == {"subtasks": [], "next_cursor": None}


def test_the_client_follows_the_pages_to_the_whole_list(
    cluster: LocalCluster, client: Client, finished: TaskHandle
) -> None:
    assert [s["index"] for s in client.get(finished.id).subtasks()] == list(range(PARTS))

    async def read() -> list[int]:
        async with AsyncClient(cluster.url) as aclient:
            handle = await aclient.get(finished.id)
            return [s["index"] for s in await handle.subtasks()]

    assert asyncio.run(read()) == list(range(PARTS))


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"limit": -5}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"cursor": "-1"}, "cursor"),
        ({"cursor": "x"}, "cursor"),
        ({"cursor": "\uff11\uff12"}, "cursor"),  # digits, but not ASCII ones
        ({"cursor": "1" * 20}, "cursor"),
        ({"cursor": ""}, "cursor"),
    ],
)
def test_a_bad_limit_or_cursor_is_422_naming_it(
    http: httpx.Client, client: Client, finished: TaskHandle,
    params: dict[str, object], needle: str,
) -> None:
    answer = http.get(subtasks_path(finished), params=params)  # type: ignore[arg-type]
    assert answer.status_code == 422, answer.text
    assert needle in str(answer.json()["detail"])
    assert_healthy(client)


def test_a_running_task_is_paged_with_its_running_parts_as_the_master_holds_them(
    http: httpx.Client, client: Client, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    handle = client.submit("gated", {"gate": str(gate), "parts": 3})
    try:

        def first_page_running() -> dict[str, object] | None:
            page = http.get(subtasks_path(handle), params={"limit": 2}).json()
            subs = page["subtasks"]
            started = len(subs) == 2 and all(
                s["state"] == "running" and s["message"] == "started" for s in subs
            )
            return page if started else None

        page = wait_until(first_page_running, timeout=20, what="the first two parts run")
        assert [s["index"] for s in page["subtasks"]] == [0, 1]  # type: ignore[attr-defined]
        assert page["next_cursor"] == "1"
        rest = http.get(subtasks_path(handle), params={"limit": 2, "cursor": "1"}).json()
        assert [s["index"] for s in rest["subtasks"]] == [2]
        assert rest["next_cursor"] is None
    finally:
        gate.touch()
    assert handle.wait(timeout=60)["state"] == "succeeded"
