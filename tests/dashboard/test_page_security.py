"""The master's pages under their own Content-Security-Policy: the dashboard and /docs work
with nothing from outside the master and nothing inline (the `page` fixture fails a test on any
refusal the browser reports)."""

from __future__ import annotations

from typing import Any

import httpx

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI) and says why
    expect = None

from herder import LocalCluster


def test_docs_render_swagger_ui_from_the_masters_own_files(
    page: Any, cluster: LocalCluster
) -> None:
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(cluster.url) and not request.url.startswith("data:")
            else None)
    page.goto(f"{cluster.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("herder")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/tasks/batch")).to_be_visible()
    assert outside == []


def test_queue_and_worker_bars_are_drawn_under_the_policy(
    page: Any, cluster: LocalCluster
) -> None:
    handle = cluster.client.submit("sleep", {"seconds": 30})
    try:
        page.goto(f"{cluster.url}/#/workers")
        busy = page.get_by_test_id("worker-busy").first.locator("span")
        # the bar's width is set through the CSSOM (a style attribute would be refused)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"worker-busy\"] span')]"
            ".some((s) => s.style.width && s.style.width !== '0%')"
        )
        expect(busy).to_have_count(1)
    finally:
        handle.cancel()


def test_pages_and_their_files_carry_the_security_headers(cluster: LocalCluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=10) as http:
        for path in ("/", "/docs", "/static/app.js", "/static/swagger-ui/swagger-ui-bundle.js"):
            r = http.get(path)
            assert r.status_code == 200, path
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["x-content-type-options"] == "nosniff", path
