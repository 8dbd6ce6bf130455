"""The import contracts of pyproject.toml hold (`lint-imports`), and importing the cluster
loads neither the CLI nor the master nor the worker."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str | None:
    """The `lint-imports` of this interpreter's environment, or None."""
    found = Path(sys.executable).with_name("lint-imports")
    return str(found) if found.exists() else shutil.which("lint-imports")


def test_the_import_contracts_hold() -> None:
    command = _lint_imports()
    assert command, "lint-imports not found: install the test extra (pip install -e '.[test]')"
    done = subprocess.run(
        [command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"lint-imports failed:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize(
    "module", ["herder.cluster", "herder.processes", "herder.forked", "herder"]
)
def test_importing_it_loads_no_server_code(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.split('.')[:2] in (['herder', 'cli'], ['herder', 'master'],\n"
        "                                        ['herder', 'worker']))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
