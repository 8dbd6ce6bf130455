"""Where all state lives: `open_store` picks the backend a URL names.

`base` is the contract, `repository` its queries' logic, one backend per module (`sqlite`,
`postgres`) with its driver. The backends are imported here only inside `open_store`, on demand
(psycopg is an extra); they import `base`, never this package. Imports `store.base` and
`errors`.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from herder.errors import HerderError
from herder.store.base import Store, redact

if TYPE_CHECKING:
    from herder.store.leader import Lease

__all__ = ["Store", "is_shared", "lock_for_one_master", "open_lease", "open_store", "redact"]


def is_shared(url: str) -> bool:
    """Whether several masters may share the store `url` names (PostgreSQL), one of them active."""
    return url.startswith(("postgres://", "postgresql://"))


def open_lease(url: str, holder: str, advertise_url: str) -> Lease:
    """The leadership of the shared store `url` (`store.leader`). Raises HerderError when its
    server cannot be reached."""
    from herder.store.leader import Lease

    return Lease(url, holder, advertise_url)


def lock_for_one_master(url: str) -> Callable[[], None]:
    """Make this process the one master of the SQLite file `url` names: an exclusive lock on
    `<file>.lock` beside it, held until the returned function is called or the process ends.
    Raises HerderError when another master holds it."""
    path = _sqlite_path(url)
    if path in ("", ":memory:"):
        return lambda: None
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise HerderError(
            f"--db: cannot open the lock file {lock_path!r}: {exc.strerror}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise HerderError(
            f"--db: another master is running on the SQLite store {path!r} (it holds "
            f"{lock_path!r}); a SQLite store serves one master. Stop that one, or share a "
            "PostgreSQL store (--db postgresql://...) between several masters"
        ) from None
    return lambda: os.close(fd)


def open_store(url: str) -> Store:
    """Open and migrate the store `url` names: `postgresql://...` or `postgres://...` ->
    PostgreSQL; `path/to/file.db`, `sqlite:///path`, or `:memory:` -> SQLite.

    Raises HerderError with one line saying what is wrong when PostgreSQL's driver is missing or
    its server cannot be reached (the CLI prints it as it is)."""
    if is_shared(url):
        try:
            from herder.store.postgres import open_postgres
        except ImportError as exc:
            if not (exc.name or "").startswith("psycopg"):
                raise
            raise HerderError(
                f"--db: PostgreSQL needs the psycopg driver, which cannot be imported ({exc}); "
                "install herder[postgres] (pip install 'herder[postgres]')"
            ) from None
        return open_postgres(url)
    from herder.store.sqlite import SqliteStore

    store = SqliteStore(_sqlite_path(url))
    store.migrate()
    return store


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///").removeprefix("sqlite://")
