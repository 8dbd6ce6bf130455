"""Fixtures shared by every test directory: a PostgreSQL server for the session.

`postgres_server` starts a throwaway server (tests/pgserver.py) the first time a test asks for
it, and stops it at the end of the session; tests that never ask start nothing. Without the
binaries or psycopg it skips with the reason, unless CI is set: then it fails, so that a CI
machine cannot pass by running nothing (as the dashboard's Chromium).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.needs import require
from tests.pgserver import PostgresServer, unavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    require(unavailable(), "the PostgreSQL tests")
    with PostgresServer() as server:
        yield server
