"""The OpenAPI document says what the answers are: schemathesis against a real master.

For every operation of the document, a bounded number of generated requests (valid and not),
sent with the token: no answer is a 5xx, and every answer has a documented status, content type,
headers and schema (errors and the bearer security scheme included, which schemathesis also
tries without the token). The event stream of all tasks is left out: it never ends by itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from herder import LocalCluster
from herder.protocol import paths
from tests.integration.conftest import TEST_TASKS, assert_healthy

TOKEN = "conformance-test-token-0123456789"
#: generated requests per operation
EXAMPLES = 60
#: a stream that ends only when the client leaves
ENDLESS = {("GET", paths.EVENTS)}
#: a submission (or a schedule) valid by the document may still name an unknown type or params
#: its type refuses, or a schedule's cron or time zone that is not one (422): the document cannot
#: say which types a master has loaded
TYPE_CHECKED = {("POST", paths.TASKS), ("POST", paths.TASKS_BATCH), ("POST", paths.SCHEDULES)}


@pytest.fixture(scope="module")
def master() -> Iterator[LocalCluster]:
    cluster = LocalCluster(workers=1, slots=2, tasks=TEST_TASKS, token=TOKEN)
    with cluster:
        yield cluster


def test_every_answer_matches_the_openapi_document(master: LocalCluster) -> None:
    schema = schemathesis.openapi.from_url(f"{master.url}/openapi.json")
    cases: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in ENDLESS:
            continue
        label = " ".join(key)
        try:
            _check_operation(operation, label, key in TYPE_CHECKED, cases)
        except Exception as exc:  # every operation is tried; all failures are reported
            failures.append(f"{label}: {exc}")
    print(f"schemathesis: {sum(cases.values())} cases over {len(cases)} operations")
    assert len(cases) >= 10, cases  # the document lists the API's operations
    assert not failures, "\n\n".join(failures)
    assert_healthy(master.client)


def _check_operation(operation: Any, label: str, type_checked: bool, cases: dict[str, int]) -> None:
    excluded = [positive_data_acceptance] if type_checked else []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        cases[label] = cases.get(label, 0) + 1
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
                               excluded_checks=excluded)

    check()


def test_the_document_declares_the_bearer_scheme_on_guarded_operations(
    master: LocalCluster,
) -> None:
    document = httpx.get(f"{master.url}/openapi.json", timeout=10).json()
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer"}
    operations = document["paths"]
    assert operations[paths.TASKS]["post"]["security"] == [{"bearer": []}]
    assert "401" in operations[paths.TASKS]["post"]["responses"]
    assert "security" not in operations[paths.HEALTHZ]["get"]
