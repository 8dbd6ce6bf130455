"""The SQL files of a backend: its migrations (`NNNN_name.sql`, applied in order) and its named
queries (`queries.sql`, blocks that start with a `-- name: x` line), read once from the package.

Each backend keeps its files in a folder of `herder/store/` (`sql` for SQLite, `sql/postgres`
for PostgreSQL). Imports `errors` only.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Iterable, Sequence
from importlib.resources.abc import Traversable

from herder.errors import HerderError

_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)

#: (version, file name, script)
Migration = tuple[int, str, str]


def _folder(folder: str) -> Traversable:
    return importlib.resources.files("herder.store").joinpath(*folder.split("/"))


@functools.cache
def queries(folder: str) -> dict[str, str]:
    """Every query of `folder`/queries.sql by name; a block runs to the next `-- name:` line."""
    text = _folder(folder).joinpath("queries.sql").read_text("utf-8")
    parts = _QUERY_HEADER.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@functools.cache
def migrations(folder: str) -> tuple[Migration, ...]:
    """Every migration file of `folder`, by version; they must be numbered 1, 2, 3, ..."""
    found: list[Migration] = []
    for entry in _folder(folder).iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise HerderError(f"store migrations must be numbered 1, 2, 3, ...; found {versions}")
    return tuple(found)


def refuse_newer_schema(where: str, applied: Iterable[int], known: Sequence[Migration]) -> None:
    """Raise HerderError when the store `where` has a schema version newer than the migrations
    this herder knows: a newer herder made it, and this one would misread it."""
    newest = max(applied, default=0)
    latest = max((version for version, _, _ in known), default=0)
    if newest > latest:
        raise HerderError(
            f"store {where} has schema version {newest}, newer than the {latest} this herder "
            "knows; upgrade herder"
        )
