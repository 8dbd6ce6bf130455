"""Log capture on the worker: `logging` records and (with capture_output) printed lines of a
running attempt reach the pool's listener as log lines, in both pools, and nothing else does.
Ends with one check through a real cluster and the HTTP API."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from herder import LocalCluster
from herder.protocol.frames import MAX_LOG_MESSAGE
from herder.worker import capture
from herder.worker.procslot import ProcessSlotPool
from herder.worker.slots import PoolBase, ThreadSlotPool
from tests.integration.conftest import TEST_TASKS, wait_until
from tests.unit.test_slots import MODULES, REGISTRY, Recorder, job, run

pytestmark = pytest.mark.timeout(30)

KEY = ("t1", 0, 1)


def make(kind: str, capture_output: bool) -> PoolBase:
    if kind == "thread":
        return ThreadSlotPool(REGISTRY, 1, 2.0, capture_output=capture_output)
    return ProcessSlotPool(MODULES, 1, 2.0, capture_output=capture_output)


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def console() -> Iterator[ListHandler]:
    """A worker whose root logger is at WARNING with one console handler (as `--log-level
    warning` leaves it); everything put back afterwards."""
    root = logging.getLogger()
    level = root.level
    handler = ListHandler()
    root.setLevel(logging.WARNING)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def logs(rec: Recorder) -> list[tuple[str, str]]:
    return [(e[2], e[3]) for e in rec.events if e[0] == "log"]


def assert_stdlog_captured(rec: Recorder) -> None:
    lines = logs(rec)
    assert all(e[1] == KEY for e in rec.events if e[0] == "log")
    assert lines[:3] == [
        ("INFO", "named info p"),
        ("WARNING", "root warning"),
        ("INFO", "via ctx"),  # once: ctx.log does not also go through the root logger
    ]
    assert len(lines) == 4, lines  # no DEBUG line, nothing from the other thread
    level, text = lines[3]
    assert level == "ERROR"
    assert text.startswith("caught it\nTraceback (most recent call last):")
    assert text.endswith("ValueError: bad value")


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_logging_in_execute_is_captured(kind: str, console: ListHandler) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("stdlog", "p"))
        assert (await rec.result(KEY)).outcome == "ok"
        assert_stdlog_captured(rec)

    run(test, make(kind, capture_output=False))


def test_thread_pool_lets_info_through_without_a_noisier_console(console: ListHandler) -> None:
    root = logging.getLogger()

    async def test(pool: PoolBase, rec: Recorder) -> None:
        assert root.level == logging.INFO
        assert console.level == logging.WARNING
        # The worker's own INFO line: neither shown nor captured.
        logging.getLogger("herder.worker.agent").info("worker chatter")
        pool.start(job("stdlog", "p"))
        assert (await rec.result(KEY)).outcome == "ok"
        assert_stdlog_captured(rec)
        shown = [r.getMessage() for r in console.records]
        # Task records go on to the console too, as far as its level allows.
        assert shown == ["root warning", "from another thread", "caught it"]

    run(test, make("thread", capture_output=False))
    assert root.level == logging.WARNING
    assert console.level == logging.NOTSET
    assert capture.AttemptLogHandler not in {type(h) for h in root.handlers}


def test_other_threads_are_not_captured_while_an_attempt_runs() -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("sleep", 30.0))
        await rec.until(lambda: any(e[0] == "progress" for e in rec.events))
        logging.getLogger("elsewhere").warning("from the event loop")
        other = threading.Thread(target=logging.getLogger("elsewhere").warning, args=("thread",))
        other.start()
        other.join()
        print("loop print")
        pool.cancel(KEY)
        assert (await rec.result(KEY)).outcome == "cancelled"
        assert logs(rec) == []

    run(test, make("thread", capture_output=True))


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_print_is_captured_with_capture_output(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    real_stdout = sys.stdout

    async def test(pool: PoolBase, rec: Recorder) -> None:
        pool.start(job("prints", "p"))
        assert (await rec.result(KEY)).outcome == "ok"
        assert logs(rec) == [
            ("INFO", "out one"),
            ("WARNING", "err one"),
            ("INFO", "out two"),
            ("INFO", "out three"),
            ("INFO", "unfinished"),  # the partial last line, sent at the end of the attempt
        ]
        assert all(e[1] == KEY for e in rec.events if e[0] == "log")

    run(test, make(kind, capture_output=True))
    assert sys.stdout is real_stdout
    if kind == "thread":
        # Another thread's print went to the real stream, and nothing else did.
        assert capsys.readouterr().out == "other thread p\n"


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_print_is_not_captured_without_capture_output(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def test(pool: PoolBase, rec: Recorder) -> None:
        assert sys.stdout is real_stdout
        pool.start(job("prints", "p"))
        assert (await rec.result(KEY)).outcome == "ok"
        assert logs(rec) == []

    real_stdout = sys.stdout
    run(test, make(kind, capture_output=False))
    if kind == "thread":
        captured = capsys.readouterr()
        assert captured.out == "out one\nout two\nout three\nother thread p\nunfinished"
        assert captured.err == "err one\n"


def test_lines_are_split_and_long_ones_sent_in_pieces() -> None:
    sent: list[tuple[str, str]] = []
    real = io.StringIO()
    proxy = capture.StreamProxy(real, "INFO")
    limit = MAX_LOG_MESSAGE

    def on_line(ts: float, level: str, text: str) -> None:
        sent.append((level, text))
        proxy.write("written while sending\n")  # must not recurse

    with capture.attempt(lambda record: None, on_line):
        proxy.write("a\n\nb")
        proxy.write("x" * limit)
        proxy.write("tail")
    assert sent == [("INFO", "a"), ("INFO", ""), ("INFO", "b" + "x" * (limit - 1)),
                    ("INFO", "x"), ("INFO", "tail")]  # fmt: skip
    # What the sending itself wrote went to the real stream, not round again.
    assert real.getvalue() == "written while sending\n" * len(sent)


def test_install_is_counted_and_undone() -> None:
    before = (sys.stdout, sys.stderr)
    capture.install(output=True)
    capture.install(output=False)
    assert isinstance(sys.stdout, capture.StreamProxy)
    capture.uninstall(output=True)
    assert capture.installed() == (True, False)
    assert (sys.stdout, sys.stderr) == before
    capture.uninstall(output=False)
    assert capture.installed() == (False, False)


# -- through a real cluster ------------------------------------------------------------------


def _task_logs(cluster: LocalCluster, task_id: str) -> list[dict[str, Any]]:
    """The task's log lines from subtasks, straight from GET /api/v1/tasks/{id}/logs."""
    answer = httpx.get(f"{cluster.url}/api/v1/tasks/{task_id}/logs", timeout=5.0)
    answer.raise_for_status()
    return [r for r in answer.json()["logs"] if r.get("subtask") is not None]


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_records_reach_the_logs_endpoint(pool: str) -> None:
    cluster = LocalCluster(
        workers=1, slots=1, pool=pool, tasks=TEST_TASKS, extra_worker_args=("--capture-output",)
    )
    with cluster as client:
        printer = client.submit("prints", {})
        stdlog = client.submit("stdlog", {})
        assert printer.wait(timeout=20)["state"] == "succeeded"
        assert stdlog.wait(timeout=20)["state"] == "succeeded"

        printed = wait_until(lambda: (r := _task_logs(cluster, printer.id)) and len(r) >= 5 and r)
        assert [(r["level"], r["message"]) for r in printed] == [
            ("INFO", "out one"),
            ("WARNING", "err one"),
            ("INFO", "out two"),
            ("INFO", "out three"),
            ("INFO", "unfinished"),
        ]
        logged = wait_until(lambda: (r := _task_logs(cluster, stdlog.id)) and len(r) >= 4 and r)
        assert [(r["level"], r["message"].split("\n")[0]) for r in logged] == [
            ("INFO", "named info {}"),
            ("WARNING", "root warning"),
            ("INFO", "via ctx"),
            ("ERROR", "caught it"),
        ]
        assert "ValueError: bad value" in logged[3]["message"]
        for record in printed + logged:
            assert (record["subtask"], record["attempt"], record["worker"]) == (0, 1, "local-1")
