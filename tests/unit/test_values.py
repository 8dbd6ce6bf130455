"""herder.values.value: plain values, equal and hashed by their fields, frozen to mypy."""

from __future__ import annotations

from pathlib import Path

import pytest

from herder import scheduling as sch
from herder.values import value


@value
class Point:
    x: int
    y: int = 0


def test_a_value_compares_and_hashes_by_its_fields_and_has_no_dict() -> None:
    assert Point(1) == Point(1, 0) != Point(1, 1)
    assert {Point(1), Point(1, 0), Point(2)} == {Point(1), Point(2)}
    assert not hasattr(Point(1), "__dict__")
    decisions = [sch.CompleteTask("a"), sch.CompleteTask("a")]
    assert len(set(decisions)) == 1


def test_mypy_refuses_to_change_a_field(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")  # (the 3.12 and 3.13 runs install the test extra only)
    snippet = tmp_path / "change.py"
    snippet.write_text(
        "from herder.values import value\n\n\n"
        "@value\nclass Point:\n    x: int\n\n\n"
        "p = Point(1)\np.x = 2\n"
    )
    out, _, status = api.run(["--no-incremental", "--strict", str(snippet)])
    assert status == 1
    assert 'Property "x" defined in "Point" is read-only' in out
