"""The SQLite queries' numbered parameters are bound as plain ones, from the rows reordered:
Python 3.14's sqlite3 refuses numbered parameters bound from a tuple."""

from __future__ import annotations

import re
import sqlite3

from herder.store.sqlfiles import queries
from herder.store.sqlite import SQL_FOLDER, plain_placeholders


def test_numbered_parameters_become_plain_ones_in_the_rows_order() -> None:
    plain, reorder = plain_placeholders({
        "in_order": "INSERT INTO t VALUES (?1, ?2, ?3)",
        "shuffled": "UPDATE t SET a = ?2, b = ?3, c = ?2 WHERE id = ?1",
        "one_late": "SELECT ?2",
        "named": "SELECT :a",
    })
    assert plain["in_order"] == "INSERT INTO t VALUES (?, ?, ?)"
    assert "in_order" not in reorder  # already in the row's order
    assert plain["shuffled"] == "UPDATE t SET a = ?, b = ?, c = ? WHERE id = ?"
    assert reorder["shuffled"](("id", "x", "y")) == ("x", "y", "x", "id")
    assert reorder["one_late"](("a", "b")) == ("b",)
    assert plain["named"] == "SELECT :a" and "named" not in reorder


def test_every_numbered_query_binds_as_its_numbers_say() -> None:
    """Each query with numbered parameters, run as a SELECT of those parameters, gives the same
    values bound the old way (numbers from a tuple) and the new way (plain, reordered)."""
    numbered = queries(SQL_FOLDER)
    plain, reorder = plain_placeholders(numbered)
    db = sqlite3.connect(":memory:")
    checked = 0
    for name, sql in numbered.items():
        numbers = [int(n) for n in re.findall(r"\?(\d+)", sql)]
        if not numbers:
            continue
        row = tuple(f"value{i}" for i in range(1, max(numbers) + 1))
        expected = tuple(row[n - 1] for n in numbers)
        select = "SELECT " + ", ".join("?" for _ in numbers)
        pick = reorder.get(name)
        assert plain[name].count("?") - plain[name].count("?ids") == len(numbers), name
        assert db.execute(select, pick(row) if pick else row).fetchone() == expected, name
        checked += 1
    assert checked >= 5
