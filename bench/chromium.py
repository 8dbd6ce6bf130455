"""Debian's Chromium as herder launches it headless: for the dashboard tests and for
`bench.follow_cost`. `/usr/bin/chromium` (or `HERDER_CHROMIUM`), never a browser that
Playwright downloads; flags that keep it off the network and the GPU."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("HERDER_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
