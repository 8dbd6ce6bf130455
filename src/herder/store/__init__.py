"""Where all state lives: `open_store` picks the backend a URL names.

`base` is the contract, `repository` its queries' logic, one backend per module (`sqlite`,
`postgres`) with its driver. The backends are imported here only inside `open_store`, on demand
(psycopg is an extra); they import `base`, never this package. Imports `store.base` and
`errors`.
"""

from __future__ import annotations

from herder.errors import HerderError
from herder.store.base import Store, redact

__all__ = ["Store", "open_store", "redact"]


def open_store(url: str) -> Store:
    """Open and migrate the store `url` names: `postgresql://...` or `postgres://...` ->
    PostgreSQL; `path/to/file.db`, `sqlite:///path`, or `:memory:` -> SQLite.

    Raises HerderError with one line saying what is wrong when PostgreSQL's driver is missing or
    its server cannot be reached (the CLI prints it as it is)."""
    if url.startswith(("postgres://", "postgresql://")):
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

    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    store = SqliteStore(path)
    store.migrate()
    return store
