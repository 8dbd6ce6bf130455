"""Fixtures of the store contract suite: the same tests run against every backend.

`store_factory` opens the one database of a test, as many times as the test likes (to close and
reopen it, or to hold two connections at once); `store` is one such opening. A backend joins the
suite by adding an entry to `_OPENERS`: a function from the test's request and tmp_path to a
factory. PostgreSQL runs on the session's server (tests/conftest.py), in a new database per
test. Imports `herder.store` (the PostgreSQL backend only when its tests run: psycopg may be
missing, and then they skip) and tests.pgserver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herder.store.base import Store
from herder.store.sqlite import SqliteStore
from tests.pgserver import PostgresServer

StoreFactory = Callable[[], Store]


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    path = str(tmp_path / "herder.db")
    return lambda: SqliteStore(path)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    from herder.store.postgres import PostgresStore

    return lambda: PostgresStore(url)


_OPENERS: dict[str, Callable[[pytest.FixtureRequest, Path], Callable[[], Store]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(_OPENERS))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_factory(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StoreFactory]:
    connect = _OPENERS[backend](request, tmp_path)
    opened: list[Store] = []

    def open_store() -> Store:
        store = connect()
        opened.append(store)
        store.migrate()
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    return store_factory()
