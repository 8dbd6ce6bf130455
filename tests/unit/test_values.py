"""herder.values.value: plain values, equal and hashed by their fields (frozen to mypy:
tests/integration/test_values_typing.py)."""

from __future__ import annotations

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
