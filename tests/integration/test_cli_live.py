"""Following tasks live against a real master and workers: `herder watch` and `herder logs
--follow` as subprocesses (no TTY: plain lines), and the client's event and log streams."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing, closing
from typing import Any

import pytest

from herder import AsyncClient, Client, LocalCluster, TaskHandle
from herder.client import Event
from herder.client.curl import CurlLink, Outgoing
from herder.client.plan import Answer
from tests.integration.conftest import wait_until

PROGRESS = re.compile(r"^(\d+)% (\d+)/(\d+) done, (\d+) running, (\d+) failed(, eta \S+)?$")


def herder_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "herder", *args]


def herder_env(cluster: LocalCluster) -> dict[str, str]:
    return {**os.environ, "HERDER_URL": cluster.url, "COLUMNS": "200"}


class Lines:
    """The lines a stream of a subprocess prints, each with the time it was read."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def text(self) -> list[str]:
        return [line for _, line in self.lines]

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"


@pytest.fixture
def popen(cluster: LocalCluster) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def run(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(herder_argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=herder_env(cluster))
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _occupy_every_slot(client: Client) -> TaskHandle:
    """A task that holds every slot until it is cancelled, so that the next one waits."""
    slots = sum(w["slots"] for w in client.workers())
    blocker = client.submit("sleep", {"seconds": 60, "parts": slots}, priority=5)
    wait_until(lambda: blocker.status()["progress"]["subtasks_running"] == slots)
    return blocker


# -- herder watch ------------------------------------------------------------------------------


def test_watch_without_a_tty_prints_progress_lines_then_the_result(
    cluster: LocalCluster, popen: Any
) -> None:
    # 16 parts of 1 s on 4 slots: about 4 s, so several progress lines at one a second. The
    # task waits behind a blocker until `watch` has started (it may take seconds on a busy box).
    client = cluster.client
    blocker = _occupy_every_slot(client)
    handle = client.submit("sleep", {"seconds": 1.0, "parts": 16})
    proc = popen("watch", handle.id)
    err, out = Lines(proc.stderr), Lines(proc.stdout)
    wait_until(lambda: err.lines, timeout=30)  # the first progress line: it is following
    blocker.cancel()
    assert proc.wait(timeout=60) == 0, err.text()
    err.join(5)
    out.join(5)
    assert out.text() == ["16"]  # the result, alone on stdout

    progress = [(at, PROGRESS.match(line)) for at, line in err.lines]
    shown = [(at, m) for at, m in progress if m]
    percents = [int(m.group(1)) for _, m in shown]
    assert len(percents) >= 3, err.text()
    assert percents == sorted(percents) and percents[0] < percents[-1] < 100
    assert all(int(m.group(3)) == 16 for _, m in shown)
    # at most one progress line a second (the pipe may deliver two a little closer together)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(shown)]
    assert min(gaps) > 0.8, gaps
    assert err.text()[-1].startswith("succeeded: 100% 16/16 done, 0 running, 0 failed, took ")


def test_watch_of_a_failing_task_prints_the_error_and_exits_1(
    cluster: LocalCluster, popen: Any
) -> None:
    handle = cluster.client.submit("fail", {"times": 5}, retries=0)
    proc = popen("watch", handle.id, "--plain")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert out == ""
    assert f"task {handle.id} failed: " in err and "boom attempt 1" in err
    assert "Traceback" in err  # the subtask's traceback, from the task's error
    assert any(line.startswith("failed: 0% 0/1 done, 0 running, 1 failed")
               for line in err.splitlines()), err


# -- herder logs --follow ----------------------------------------------------------------------


def test_logs_follow_prints_lines_while_the_task_runs(cluster: LocalCluster, popen: Any) -> None:
    # 20 lines 0.25 s apart: about 5 s, once the command has had a second to start
    blocker = _occupy_every_slot(cluster.client)
    handle = cluster.client.submit("chatty", {"parts": 1, "lines": 20, "delay": 0.25})
    proc = popen("logs", handle.id, "--follow")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)
    blocker.cancel()
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.rstrip().endswith("part 0 line 0") and "[#0 a1 local-" in first
    assert handle.status()["state"] == "running"  # printed before the task ended
    rest = Lines(proc.stdout)
    assert proc.wait(timeout=60) == 0
    rest.join(5)
    assert [line.split("] ")[-1] for line in rest.text()] == [
        f"part 0 line {n}" for n in range(1, 20)]
    assert rest.lines[-1][0] - rest.lines[0][0] > 1.0  # they came one by one, not at the end
    assert handle.status()["state"] == "succeeded"


def test_logs_follow_waits_for_a_pending_task_and_ends_with_it(
    cluster: LocalCluster, popen: Any
) -> None:
    client = cluster.client
    blocker = _occupy_every_slot(client)
    handle = client.submit("logs", {"n": 1})
    proc = popen("logs", handle.id, "-f")
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)  # nothing to print yet, and not over: it waits
    waiting = handle.status()  # split into its queued subtask, but none has run
    assert waiting["state"] in ("pending", "running")
    assert waiting["progress"]["subtasks_done"] == waiting["progress"]["subtasks_running"] == 0
    blocker.cancel()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    messages = [line.split("] ", 1)[1] for line in out.splitlines()]
    assert messages == ["starting part {'n': 1}", "halfway there", "done"]
    assert " WARNING " in out.splitlines()[1]
    assert handle.status()["state"] == "succeeded"


def test_logs_without_follow_prints_the_stored_lines(cluster: LocalCluster) -> None:
    handle = cluster.client.submit("logs", {"n": 2})
    handle.wait(timeout=30)
    first = handle.logs()[0]["seq"]
    out = subprocess.run(herder_argv("logs", handle.id, "--since", str(first)),
                         capture_output=True, text=True, env=herder_env(cluster), timeout=60)
    assert out.returncode == 0, out.stderr
    assert [line.split("] ", 1)[1] for line in out.stdout.splitlines()] == [
        "halfway there", "done"]


# -- the client's streams ----------------------------------------------------------------------


def test_events_snapshot_progress_logs_then_the_final_state(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 2, "lines": 5, "delay": 0.05})
    events = list(handle.events())
    kinds = [e.kind for e in events]
    assert kinds[0] == "snapshot" and events[0].data["id"] == handle.id
    assert events[-1].kind == "state" and events[-1].data["state"] == "succeeded"
    assert kinds.count("snapshot") == 1 and "progress" in kinds
    assert kinds.index("progress") < len(kinds) - 1
    logs = [e.data for e in events if e.kind == "log"]
    assert sorted(r["message"] for r in logs) == sorted(
        f"part {p} line {n}" for p in range(2) for n in range(5))
    assert [r["seq"] for r in logs] == sorted(r["seq"] for r in logs)
    durable = [e.id for e in events if e.id is not None]
    assert durable == sorted(set(durable))  # increasing: nothing twice
    assert all(e.id is None for e in events if e.kind in ("snapshot", "progress"))
    fractions = [e.data["progress"]["fraction"] for e in events if e.kind == "progress"]
    assert fractions == sorted(fractions)


def test_resuming_with_last_event_id_misses_nothing_and_repeats_nothing(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 2, "lines": 10, "delay": 0.05})
    first: list[Event] = []
    with closing(handle.events()) as stream:
        for event in stream:
            first.append(event)
            if event.kind == "log":
                break  # drop the connection mid-task
    assert handle.status()["state"] not in ("succeeded", "failed")
    resumed = list(handle.events(last_event_id=first[-1].id))
    assert resumed[0].kind == "snapshot"
    everything = list(client.events(handle.id, last_event_id=0))  # all that is stored
    ids = [e.id for e in first + resumed if e.id is not None]
    assert ids == [e.id for e in everything if e.id is not None]
    assert resumed[-1].kind == "state" and resumed[-1].data["state"] == "succeeded"


def test_handle_logs_follow_and_subtasks(client: Client) -> None:
    handle = client.submit("chatty", {"parts": 2, "lines": 3, "delay": 0.05})
    followed = list(handle.logs(follow=True))
    assert handle.status()["state"] == "succeeded"
    assert len(followed) == 6 and followed == handle.logs()
    assert handle.logs(since=followed[3]["seq"]) == followed[4:]
    subtasks = handle.subtasks()
    assert [s["index"] for s in subtasks] == [0, 1]
    assert all(s["state"] == "succeeded" and s["attempts"] == 1 for s in subtasks)


def test_async_events_and_logs(cluster: LocalCluster) -> None:
    async def main() -> tuple[list[Event], list[dict[str, Any]]]:
        async with AsyncClient(cluster.url) as client:
            handle = await client.submit("logs", {"n": 3})
            async with aclosing(handle.events()) as stream:
                events = [e async for e in stream]
            followed = [r async for r in handle.logs(follow=True)]
            assert followed == await handle.logs()
            return events, followed

    events, followed = asyncio.run(main())
    assert events[0].kind == "snapshot" and events[-1].data["state"] == "succeeded"
    assert [r["message"] for r in followed] == ["starting part {'n': 3}", "halfway there", "done"]


def test_list_and_workers_tables(cluster: LocalCluster) -> None:
    handle = cluster.client.submit("noop", {"value": 1})
    handle.wait(timeout=30)
    env = herder_env(cluster)
    listing = subprocess.run(herder_argv("list", "--type", "noop"), capture_output=True,
                             text=True, env=env, timeout=60)
    assert listing.returncode == 0, listing.stderr
    header = listing.stdout.splitlines()[1]
    assert "progress" in header and "eta" in header
    assert re.search(rf"{handle.id[:8]}.*100% 1/1", listing.stdout)
    workers = subprocess.run(herder_argv("workers"), capture_output=True, text=True, env=env,
                             timeout=60)
    assert "busy/slots" in workers.stdout
    assert re.search(r"local-1 .* \d/2 .* \d+\.\ds ago", workers.stdout), workers.stdout


def test_logs_show_the_dropped_records_marker_first() -> None:
    from tests.integration.conftest import TEST_TASKS

    with LocalCluster(workers=1, slots=1, tasks=TEST_TASKS,
                      extra_master_args=["--max-logs-per-task", "5"]) as client:
        handle = client.submit("chatty", {"parts": 1, "lines": 12})
        handle.wait(timeout=30)
        env = {**os.environ, "HERDER_URL": client.url}
        for follow in ([], ["--follow"]):
            out = subprocess.run(herder_argv("logs", handle.id, *follow), capture_output=True,
                                 text=True, env=env, timeout=60)
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert len(lines) == 6, lines
            assert re.search(r"WARNING +\.\.\. \d+ older log records were dropped \.\.\.$",
                             lines[0]), lines[0]
            assert lines[-1].endswith("part 0 line 11")


class _NoStreams(CurlLink):
    """A master as an older one, or one behind a proxy that will not stream, would answer."""

    _REFUSED = Answer(404, [(b"Content-Type", b"application/json")], b'{"detail": "Not Found"}')

    @staticmethod
    def _refused(out: Outgoing) -> bool:
        path, _, query = out.url.partition("?")
        return path.endswith("/events") or "follow=true" in query

    def call(self, out: Outgoing) -> Answer:
        return self._REFUSED if self._refused(out) else super().call(out)

    @contextlib.contextmanager
    def stream(self, out: Outgoing) -> Iterator[tuple[Answer, Iterator[bytes]]]:
        if self._refused(out):
            yield self._REFUSED, iter(())
            return
        with super().stream(out) as opened:
            yield opened


def test_watch_falls_back_to_polling_when_the_stream_is_refused(cluster: LocalCluster) -> None:
    from rich.console import Console

    from herder.cli import follow

    shown = io.StringIO()
    with Client(cluster.url, transport=_NoStreams()) as client:
        handle = client.submit("chatty", {"parts": 2, "lines": 3, "delay": 0.1})
        task = follow(handle, Console(file=shown, width=200), plain=True)
    assert task["state"] == "succeeded" and task["result"] == 6
    lines = shown.getvalue().splitlines()
    assert sorted(line.split("] ")[-1] for line in lines if "] part " in line) == sorted(
        f"part {p} line {n}" for p in range(2) for n in range(3))
    assert any(PROGRESS.match(line) for line in lines), lines
    assert lines[-1].startswith("succeeded: 100% 2/2 done, 0 running, 0 failed, took ")
