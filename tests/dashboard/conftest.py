"""Fixtures for the dashboard tests: Debian's Chromium driven by Playwright, and a real cluster.

Chromium is `/usr/bin/chromium` (or `HERDER_CHROMIUM`), never a browser that Playwright
downloads. Without it (or without Playwright) the tests skip with the reason, unless `CI` is
set: then they fail, so that a CI machine cannot pass by running nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from bench.chromium import CHROMIUM, LAUNCH_ARGS

from herder import LocalCluster
from tests.needs import require

TEST_TASKS = ("tests.tasktypes",)
#: how long a UI expectation may take (a loaded CI machine is slow, a broken page never passes)
UI_TIMEOUT_MS = 20_000


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium, or `make test-deps` as root)"
    return None


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and later tests that call asyncio.run() must not find one.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(_missing(), "the dashboard tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) per test; uncaught errors and what the
    page's Content-Security-Policy refused fail it."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # what the page's Content-Security-Policy refused (a script, a style, an inline attribute)
    pg.on("console", lambda msg: errors.append(msg.text)
          if "Content Security Policy" in msg.text else None)
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(workers=2, slots=2, tasks=TEST_TASKS)
    with c:
        yield c
