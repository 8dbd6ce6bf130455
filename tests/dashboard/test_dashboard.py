"""The dashboard in a real headless Chromium against a real master and workers.

Every wait is a Playwright expectation or wait_for_function with a deadline; no bare sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI) and says why
    expect = None

from herder import LocalCluster
from tests.dashboard.conftest import TEST_TASKS

TOKEN = "dashboard-test-token"

# The value (percent) of the task page's progress bar when it is in (low, high], else null.
BAR_WITHIN = """([low, high]) => {
  const bar = document.querySelector('[data-testid="progress-bar"]');
  const value = bar ? Number(bar.getAttribute("aria-valuenow")) : NaN;
  return value > low && value <= high ? value : null;
}"""


def test_submit_through_the_form_shows_progress_then_success(
    page: Any, cluster: LocalCluster
) -> None:
    page.goto(f"{cluster.url}/#/submit")
    page.get_by_test_id("submit-type").select_option("sleep")
    # the form is generated from sleep's params schema: bounds and required come from pydantic
    seconds = page.get_by_test_id("param-seconds")
    expect(seconds).to_have_attribute("min", "0")
    expect(seconds).to_have_attribute("required", "")
    expect(page.get_by_test_id("param-parts")).to_have_value("1")
    seconds.fill("0.5")
    page.get_by_test_id("param-parts").fill("16")
    page.get_by_test_id("submit-button").click()

    expect(page).to_have_url(re.compile(r".*#/task/[^/]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    # the bar advances: a value strictly between 0 and 100, then a larger one
    first = page.wait_for_function(BAR_WITHIN, arg=[0, 99.9], polling="raf").json_value()
    later = page.wait_for_function(BAR_WITHIN, arg=[first, 100], polling="raf").json_value()
    assert 0 < first < later <= 100
    expect(page.get_by_test_id("task-state")).to_have_text("succeeded")
    expect(page.get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_test_id("task-result")).to_have_text("16")
    expect(page.get_by_test_id("cancel-button")).to_be_disabled()
    # every subtask is listed, and the timeline drew one bar per subtask
    expect(page.locator('[data-testid^="subtask-row-"]')).to_have_count(16)
    expect(page.locator('[data-testid="timeline"] rect.bar')).to_have_count(16)
    assert cluster.client.get(task_id).status()["state"] == "succeeded"


def test_cancel_from_the_task_page(page: Any, cluster: LocalCluster) -> None:
    handle = cluster.client.submit("sleep", {"seconds": 120, "parts": 2})
    page.goto(f"{cluster.url}/#/task/{handle.id}")
    expect(page.get_by_test_id("task-state")).to_have_text("running")
    button = page.get_by_test_id("cancel-button")
    expect(button).to_be_enabled()
    button.click()
    expect(page.get_by_test_id("task-state")).to_have_text("cancelled")
    expect(button).to_be_disabled()
    assert handle.status()["state"] == "cancelled"


def test_tasks_list_follows_a_task_live(page: Any, cluster: LocalCluster) -> None:
    page.goto(f"{cluster.url}/#/tasks")
    expect(page.get_by_test_id("live-status")).to_have_text("live")
    handle = cluster.client.submit("sleep", {"seconds": 0.3, "parts": 8}, priority=3)
    row = page.get_by_test_id(f"task-row-{handle.id}")
    expect(row.get_by_test_id("task-state")).to_have_text("succeeded")
    expect(row.get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "100")
    expect(row).to_contain_text("sleep")
    expect(page.get_by_test_id("throughput-chart")).to_be_visible()


def test_workers_page_shows_both_workers(page: Any, cluster: LocalCluster) -> None:
    page.goto(f"{cluster.url}/#/workers")
    rows = page.locator('[data-testid^="worker-row-"]')
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("workers-summary")).to_contain_text("2 workers")
    for worker in cluster.client.workers():
        row = page.get_by_test_id(f"worker-row-{worker['id']}")
        expect(row).to_contain_text(worker["name"])
        expect(row).to_contain_text("s ago")
        expect(row.get_by_test_id("worker-busy")).to_have_attribute("aria-valuemax", "2")


def test_schedules_page_shows_the_next_run_and_the_last_task(
    page: Any, cluster: LocalCluster
) -> None:
    client = cluster.client
    client.schedules.add("dash-tick", "noop", {"value": 1}, every="1s", overlap="allow")
    client.schedules.add("dash-cron", "noop", {"value": 2}, cron="0 3 * * *", timezone="Asia/Tokyo")
    try:
        page.goto(f"{cluster.url}/#/schedules")
        expect(page.get_by_test_id("schedules-summary")).to_contain_text("2 schedules")
        cron_row = page.get_by_test_id("schedule-row-dash-cron")
        expect(cron_row).to_contain_text("cron 0 3 * * * (Asia/Tokyo)")
        expect(cron_row).to_contain_text("never")
        expect(cron_row.get_by_test_id("schedule-next")).not_to_be_empty()
        last = page.get_by_test_id("schedule-row-dash-tick").get_by_test_id("schedule-last-task")
        expect(last.locator("a")).to_have_count(1, timeout=10_000)
        task_id = last.locator("a").inner_text()
        fired = {t["id"] for t in client.list_tasks(schedule="dash-tick", limit=1000)}
        assert task_id in fired
        last.locator("a").click()
        expect(page).to_have_url(re.compile(f"#/task/{re.escape(task_id)}$"))
    finally:
        client.schedules.remove("dash-tick")
        client.schedules.remove("dash-cron")


def test_a_refused_submission_shows_the_servers_detail(page: Any, cluster: LocalCluster) -> None:
    page.goto(f"{cluster.url}/#/submit/echo")
    expect(page.get_by_test_id("submit-type")).to_have_value("echo")
    # `items` is a list: the form falls back to a JSON textarea, and the master says why an
    # object does not fit
    page.get_by_test_id("param-items").fill('{"not": "a list"}')
    page.get_by_test_id("submit-button").click()
    expect(page.get_by_test_id("submit-error")).to_contain_text("params.items")
    expect(page).to_have_url(f"{cluster.url}/#/submit/echo")


def test_the_task_page_reads_every_page_of_a_big_tasks_subtasks(
    page: Any, cluster: LocalCluster
) -> None:
    # one more than the largest page the API hands out: the page must follow the cursor
    handle = cluster.client.submit("echo", {"items": list(range(10_001))})
    assert handle.wait(timeout=120)["state"] == "succeeded"
    page.goto(f"{cluster.url}/#/task/{handle.id}")
    expect(page.get_by_test_id("subtask-note")).to_have_text("showing 1000 of 10001")
    expect(page.locator('[data-testid^="subtask-row-"]')).to_have_count(1000)


def test_sse_parser_handles_split_lines_comments_and_ids(page: Any, cluster: LocalCluster) -> None:
    page.goto(f"{cluster.url}/#/workers")
    events = page.evaluate("""async () => {
      const { readEvents } = await import("./static/sse.js");
      const chunks = [": keep-alive\\r", "\\nid: 7\\nevent: state\\ndata: {\\"a\\"", ":1}\\r",
                      "\\n\\ndata: line one\\ndata: line two\\n\\nid: 9\\n\\n"];
      const body = new ReadableStream({ start(c) {
        for (const t of chunks) c.enqueue(new TextEncoder().encode(t)); c.close(); } });
      const out = [];
      await readEvents(body, (e) => out.push(e));
      return out;
    }""")
    assert events == [
        {"type": "state", "id": "7", "data": {"a": 1}},
        {"type": "message", "id": None, "data": "line one\nline two"},
        {"type": "", "id": "9", "data": ""},
    ]


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=1, slots=1, tasks=TEST_TASKS, token=TOKEN)
    with c:
        yield c


def test_token_is_asked_once_and_kept_for_the_session(
    page: Any, token_cluster: LocalCluster
) -> None:
    handle = token_cluster.client.submit("noop", {"value": 1})
    page.goto(f"{token_cluster.url}/#/tasks")
    form = page.get_by_test_id("token-form")
    expect(form).to_be_visible()
    page.get_by_test_id("token-input").fill("wrong")
    page.get_by_test_id("token-submit").click()
    expect(form).to_be_visible()
    expect(form).to_contain_text("rejected")
    page.get_by_test_id("token-input").fill(TOKEN)
    page.get_by_test_id("token-submit").click()
    expect(form).to_be_hidden()
    expect(page.get_by_test_id(f"task-row-{handle.id}")).to_be_visible()
    expect(page.get_by_test_id("live-status")).to_have_text("live")
    # kept in sessionStorage: a reload asks nothing
    page.reload()
    expect(page.get_by_test_id(f"task-row-{handle.id}")).to_be_visible()
    expect(form).to_be_hidden()


def test_a_task_waiting_for_a_label_shows_why_on_its_page_and_in_the_list(
    page: Any, cluster: LocalCluster
) -> None:
    handle = cluster.client.submit("sleep", {"seconds": 0, "parts": 1}, labels=["gpu"])
    reason = "no connected worker has the labels gpu"
    page.goto(f"{cluster.url}/#/task/{handle.id}")
    expect(page.get_by_test_id("task-waiting")).to_have_text(f"Waiting: {reason}")
    page.goto(f"{cluster.url}/#/tasks")
    row = page.get_by_test_id(f"task-row-{handle.id}")
    expect(row.get_by_test_id("task-waiting")).to_have_text(reason)
    handle.cancel()
    expect(row.get_by_test_id("task-waiting")).to_have_text("")
