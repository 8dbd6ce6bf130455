"""herder.values.value is frozen to mypy (with the dev tools only: the newer Pythons' runs install
the test extra, which has no mypy)."""

from __future__ import annotations

from pathlib import Path

from mypy import api


def test_mypy_refuses_to_change_a_field(tmp_path: Path) -> None:
    snippet = tmp_path / "change.py"
    snippet.write_text(
        "from herder.values import value\n\n\n"
        "@value\nclass Point:\n    x: int\n\n\n"
        "p = Point(1)\np.x = 2\n"
    )
    out, _, status = api.run(["--no-incremental", "--strict", str(snippet)])
    assert status == 1
    assert 'Property "x" defined in "Point" is read-only' in out
