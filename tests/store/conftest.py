"""Fixtures of the store contract suite: the same tests run against every backend.

`store_factory` opens the one database of a test, as many times as the test likes (to close and
reopen it, or to hold two connections at once); `store` is one such opening. A backend joins the
suite by adding an entry to `_OPENERS`: a function from the test's tmp_path to a factory.
Imports `herder.store` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from herder.store.base import Store
from herder.store.sqlite import SqliteStore

StoreFactory = Callable[[], Store]


def _sqlite(tmp_path: Path) -> Callable[[], Store]:
    path = str(tmp_path / "herder.db")
    return lambda: SqliteStore(path)


# "postgres" goes here: start (or reuse) a server, create a database for the test, and return a
# factory that connects to it.
_OPENERS: dict[str, Callable[[Path], Callable[[], Store]]] = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(_OPENERS))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    connect = _OPENERS[backend](tmp_path)
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
