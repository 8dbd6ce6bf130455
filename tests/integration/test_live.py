"""Following a task live: progress, ETA, logs, events, subtasks, metrics (issue 3), on real
processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herder import Client, LocalCluster
from tests.integration.conftest import TEST_TASKS, wait_until


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """A minimal Server-Sent Events reader: yields {"event", "id", "data"}."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(": ")
            event[field] = value


def test_progress_never_goes_back_and_is_one_on_success(client: Client) -> None:
    handle = client.submit("sleep", {"seconds": 0.3, "parts": 10})
    seen: list[float] = []
    while (status := handle.status())["state"] not in {"succeeded", "failed"}:
        seen.append(status["progress"]["fraction"])
        assert status["progress"]["fraction"] < 1.0
        time.sleep(0.02)
    assert status["state"] == "succeeded"
    assert status["progress"]["fraction"] == 1.0
    assert seen == sorted(seen)
    assert len(set(seen)) > 3  # it moved in steps, not only 0 then 1


def test_subtasks_lists_each_subtask(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 3, "lines": 30, "delay": 0.05})

    def running_with_message() -> list[dict[str, Any]] | None:
        subs = httpx.get(f"{client.url}/api/v1/tasks/{handle.id}/subtasks").json()["subtasks"]
        return subs if any(s["state"] == "running" and s["message"] for s in subs) else None

    subs = wait_until(running_with_message)
    assert [s["index"] for s in subs] == [0, 1, 2]
    running = next(s for s in subs if s["state"] == "running" and s["message"])
    assert running["message"].startswith("line ")
    assert running["worker"].startswith("local-")
    assert running["attempts"] == 1 and running["duration"] >= 0
    handle.wait(timeout=20)
    subs = httpx.get(f"{client.url}/api/v1/tasks/{handle.id}/subtasks").json()["subtasks"]
    assert all(s["state"] == "succeeded" for s in subs)
    assert all(s["finished_at"] >= s["started_at"] and s["duration"] > 0 for s in subs)


def test_logs_are_ordered_and_follow_streams_them(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 2, "lines": 20, "delay": 0.02})
    with httpx.stream(
        "GET", f"{client.url}/api/v1/tasks/{handle.id}/logs",
        params={"follow": "true"}, timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        streamed = [e["data"] for e in sse_events(response)]  # ends when the task ends
    assert len(streamed) == 40
    seqs = [r["seq"] for r in streamed]
    assert seqs == sorted(seqs) and len(set(seqs)) == 40
    for part in (0, 1):
        lines = [r["message"] for r in streamed if r["subtask"] == part]
        assert lines == [f"part {part} line {n}" for n in range(20)]
    assert all(r["worker"].startswith("local-") and r["attempt"] == 1 for r in streamed)
    stored = httpx.get(f"{client.url}/api/v1/tasks/{handle.id}/logs").json()
    assert [r["seq"] for r in stored["logs"]] == seqs and stored["dropped"] == 0
    later = httpx.get(f"{client.url}/api/v1/tasks/{handle.id}/logs", params={"since": seqs[29]})
    assert [r["seq"] for r in later.json()["logs"]] == seqs[30:]


def test_task_events_stream_and_resume_without_loss(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 2, "lines": 30, "delay": 0.03})
    url = f"{client.url}/api/v1/tasks/{handle.id}/events"
    first: list[dict[str, Any]] = []
    with httpx.stream("GET", url, timeout=30) as response:
        for event in sse_events(response):
            first.append(event)
            kinds = [e["event"] for e in first]
            if kinds.count("log") >= 10 and "progress" in kinds:
                break  # drop the connection mid-task
    assert first[0]["event"] == "snapshot" and first[0]["data"]["id"] == handle.id
    last_id = max(int(e["id"]) for e in first if "id" in e)
    rest: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers={"Last-Event-ID": str(last_id)}, timeout=30) as resp:
        rest = list(sse_events(resp))
    durable = [e for e in first + rest if "id" in e]
    ids = [int(e["id"]) for e in durable]
    assert ids == sorted(ids) and len(ids) == len(set(ids))  # nothing twice
    logs = [e["data"]["message"] for e in durable if e["event"] == "log"]
    assert sorted(logs) == sorted(f"part {p} line {n}" for p in (0, 1) for n in range(30))
    # only the final state is stored: the others are live events, with no id
    assert [e["data"]["state"] for e in durable if e["event"] == "state"] == ["succeeded"]
    passing = [e for e in first + rest if e["event"] == "state" and "id" not in e]
    assert {e["data"]["state"] for e in passing} <= {"pending", "running", "aggregating"}
    assert rest[-1]["event"] == "state"  # the stream ends after the final state
    assert any(e["event"] == "log" for e in rest)  # the second half came after the break


def test_a_quick_aggregate_goes_from_running_to_the_final_state(client: Client) -> None:
    # The first calls of a type's aggregate run on a thread, timed; once they were quick, it
    # runs in the master's step that ends the task, which is then never aggregating: no
    # event. A slow one is (test_lifecycle: listed as aggregating).
    client.gather(client.submit_many([{"type": "noop", "params": {"value": i}} for i in range(20)]))
    states: dict[str, list[str]] = {}
    with httpx.stream("GET", f"{client.url}/api/v1/events", timeout=30) as response:
        handles = [client.submit("noop", {"value": i}) for i in range(20)]
        ids = {h.id for h in handles}
        for event in sse_events(response):
            if event["event"] == "state" and event["data"]["task_id"] in ids:
                states.setdefault(event["data"]["task_id"], []).append(event["data"]["state"])
                if all(s[-1:] == ["succeeded"] for s in states.values()) and len(states) == 20:
                    break
    short = ["pending", "running", "succeeded"]
    slow = ["pending", "running", "aggregating", "succeeded"]
    assert all(s in (short, slow) for s in states.values())
    # (a call that the host stalled past the inline bound sends the kind back to the threads
    # for its next few calls: most, not all)
    assert sum(s == short for s in states.values()) >= 15, states
    # replayed from the store: the final state only
    url = f"{client.url}/api/v1/tasks/{handles[0].id}/events"
    with httpx.stream("GET", url, params={"last_event_id": 0}, timeout=30) as response:
        replayed = [e for e in sse_events(response) if e["event"] == "state"]
    assert [e["data"]["state"] for e in replayed] == ["succeeded"] and "id" in replayed[0]


def test_global_events_carry_every_task(client: Client) -> None:
    seen: dict[str, set[str]] = {}
    with httpx.stream("GET", f"{client.url}/api/v1/events", timeout=30) as response:
        a = client.submit("noop", {"value": 1})
        b = client.submit("sleep", {"seconds": 0.2, "parts": 2})
        for event in sse_events(response):
            if event["event"] == "state":
                seen.setdefault(event["data"]["task_id"], set()).add(event["data"]["state"])
            if all("succeeded" in seen.get(h.id, set()) for h in (a, b)):
                break
    assert {"pending", "running", "succeeded"} <= seen[a.id]


def test_a_live_final_event_carries_the_task_and_a_replayed_one_does_not(client: Client) -> None:
    url = f"{client.url}/api/v1/events"
    with httpx.stream("GET", url, params={"finished": "true"}, timeout=30) as response:
        handle = client.submit("noop", {"value": {"answer": 42}})
        live = next(e for e in sse_events(response) if e["data"]["task_id"] == handle.id)
    assert live["event"] == "state" and live["data"]["state"] == "succeeded"
    assert live["data"]["task"]["id"] == handle.id
    assert live["data"]["task"]["result"] == {"answer": 42}
    assert live["data"]["task"] == client.get(handle.id).status()
    replay_from = int(live["id"]) - 1
    with httpx.stream(
        "GET", url, params={"finished": "true", "last_event_id": replay_from}, timeout=30
    ) as response:
        replayed = next(e for e in sse_events(response) if e["data"]["task_id"] == handle.id)
    assert replayed["id"] == live["id"] and "task" not in replayed["data"]


def test_progress_events_are_throttled(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 4, "lines": 400, "delay": 0.002})
    times: list[float] = []
    with httpx.stream("GET", f"{client.url}/api/v1/tasks/{handle.id}/events", timeout=30) as r:
        for event in sse_events(r):
            if event["event"] == "progress":
                times.append(time.monotonic())
    assert len(times) >= 3
    span = times[-1] - times[0]
    assert len(times) <= 10 * span + 3  # at most 10 a second (plus edges)


def test_metrics_move(client: Client) -> None:
    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{client.url}/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    before = scrape()
    client.submit("sleep", {"seconds": 0.05, "parts": 3}).wait(timeout=20)
    client.submit("fail", {"times": 1}).wait(timeout=20)
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("herder_tasks_submitted_total", type="sleep") == 1
    assert delta("herder_tasks_finished_total", type="sleep", state="succeeded") == 1
    assert delta("herder_subtask_duration_seconds_count", type="sleep") == 3
    assert delta("herder_retries_total") == 1
    assert after[("herder_workers_connected", ())] == 2
    assert after[("herder_slots_total", ())] == 4
    assert delta("herder_dispatch_latency_seconds_count") >= 5


@pytest.fixture(scope="module")
def small_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    db = str(tmp_path_factory.mktemp("logs") / "logs.db")
    c = LocalCluster(
        workers=1, slots=1, tasks=TEST_TASKS, db=db,
        extra_master_args=("--max-logs-per-task", "20"),
    )
    with c:
        yield c


def test_logs_are_bounded_with_a_marker(small_logs: LocalCluster) -> None:
    client = small_logs.client
    handle = client.submit("chatty", {"parts": 1, "lines": 100})
    handle.wait(timeout=20)
    answer = httpx.get(f"{small_logs.url}/api/v1/tasks/{handle.id}/logs").json()
    kept = [r for r in answer["logs"] if r["message"].startswith("part")]
    assert 20 <= len(kept) <= 22
    assert kept[-1]["message"] == "part 0 line 99"
    assert answer["dropped"] == 100 - len(kept)
    marker = answer["logs"][0]
    assert marker["level"] == "WARNING" and f"{answer['dropped']} older" in marker["message"]


def test_logs_survive_a_master_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "restart.db")
    with LocalCluster(workers=1, slots=1, tasks=TEST_TASKS, db=db) as client:
        handle = client.submit("chatty", {"parts": 1, "lines": 5})
        handle.wait(timeout=20)
        before = handle.logs()
    with LocalCluster(workers=1, slots=1, tasks=TEST_TASKS, db=db) as client:
        assert client.get(handle.id).logs() == before
        assert len(before) == 5


def test_eta_tracks_the_truth(client: Client) -> None:
    """40 parts x 0.5 s on 4 slots: once 25 % is done the estimate is within 20 % of the truth."""
    handle = client.submit("sleep", {"seconds": 0.5, "parts": 40})
    samples: list[tuple[float, float, float | None]] = []
    while (status := handle.status())["state"] not in {"succeeded", "failed"}:
        samples.append((time.monotonic(), status["progress"]["fraction"], status["eta_seconds"]))
        time.sleep(0.05)
    end = time.monotonic()
    assert status["state"] == "succeeded"
    errors: dict[float, float] = {}
    for mark in (0.25, 0.5, 0.75):
        t, _, eta = next(s for s in samples if s[1] >= mark)
        truth = end - t
        assert eta is not None
        errors[mark] = abs(eta - truth) / truth
    print(f"ETA relative error at 25/50/75%: {errors}")
    assert errors[0.25] <= 0.20


def test_finished_only_stream_carries_one_final_state_per_task(client: Client) -> None:
    finals: dict[str, str] = {}
    with httpx.stream(
        "GET", f"{client.url}/api/v1/events", params={"finished": "true"}, timeout=30
    ) as response:
        handles = [client.submit("noop", {"value": i}) for i in range(3)]
        doomed = client.submit("sleep", {"seconds": 30})
        doomed.cancel()
        wanted = {h.id for h in [*handles, doomed]}
        for event in sse_events(response):
            assert event["event"] == "state"
            assert event["data"]["state"] in {"succeeded", "failed", "cancelled", "timed_out"}
            assert event["data"]["task_id"] not in finals  # once per task
            finals[event["data"]["task_id"]] = event["data"]["state"]
            if wanted <= finals.keys():
                break
    assert finals[doomed.id] == "cancelled"
    assert all(finals[h.id] == "succeeded" for h in handles)


def test_long_poll_answers_when_the_task_finishes(client: Client) -> None:
    handle = client.submit("sleep", {"seconds": 0.5})
    started = time.monotonic()
    task = httpx.get(
        f"{client.url}/api/v1/tasks/{handle.id}", params={"wait": 10}, timeout=15
    ).json()
    waited = time.monotonic() - started
    assert task["state"] == "succeeded"
    assert 0.3 < waited < 5.0  # it waited for the task, not for the 10 s
    quick = httpx.get(f"{client.url}/api/v1/tasks/{handle.id}", params={"wait": 10}).json()
    assert quick["state"] == "succeeded"  # a finished task answers at once
    assert httpx.get(f"{client.url}/api/v1/tasks/x", params={"wait": 61}).status_code == 422
