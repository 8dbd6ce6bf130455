"""What a test needs from the machine (a PostgreSQL server, Chromium): without it, the test is
skipped with the reason, unless CI is set: then it fails, so that a CI machine cannot pass by
running nothing. Imports pytest only."""

from __future__ import annotations

import os

import pytest


def require(reason: str | None, what: str) -> None:
    """`reason`: why `what` cannot run here, or None when it can."""
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {what} cannot run: {reason}")
    pytest.skip(reason)
