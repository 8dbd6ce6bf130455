"""No module of src/ passes 600 lines: a longer one holds more than one job (STYLE.md)."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_LINES = 600


def test_no_module_passes_the_line_limit() -> None:
    modules = sorted(SRC.rglob("*.py"))
    assert modules, f"no modules found under {SRC}"
    too_long = {
        str(path.relative_to(SRC)): n
        for path in modules
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, (
        f"modules over {MAX_LINES} lines (split them by job): "
        + ", ".join(f"{name} ({n} lines)" for name, n in sorted(too_long.items()))
    )
