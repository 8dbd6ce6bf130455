"""Process-wide interpreter settings: `herder master` sets them in its own process
(herder.cli.tuning); a program that embeds herder keeps its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from herder import LocalCluster
from herder.cli.tuning import FULL_COLLECTION_EVERY


def python_defaults() -> dict[str, Any]:
    """The settings of a fresh interpreter (they differ between versions)."""
    code = "import json, tests.processtypes as t; print(json.dumps(t.interpreter_settings()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    settings: dict[str, Any] = json.loads(done.stdout)
    return settings


def test_herder_master_tunes_its_own_process() -> None:
    defaults = python_defaults()
    with LocalCluster(workers=1, tasks=["tests.processtypes"], log_level="warning") as client:
        seen = client.submit("process_settings").result(timeout=60)
    assert seen["master"] == {
        **defaults, "gc_threshold": [*defaults["gc_threshold"][:2], FULL_COLLECTION_EVERY]
    }
    assert seen["worker"] == defaults  # nothing measured worth setting there


# A program that embeds herder, in a fresh interpreter: it serves a master and runs a worker on
# threads of its own and starts a LocalCluster; its own settings must stay Python's defaults.
_EMBEDDED = """
import gc, sys, threading, time
import httpx
from herder import LocalCluster
from herder.cluster import free_port
from herder.config import MasterSettings, WorkerSettings
from herder.master import serve
from herder.worker import run_worker

def wait_for_workers(url, n):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).json()["workers"] >= n:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit("the embedded master and worker did not start")

defaults = (sys.getswitchinterval(), gc.get_threshold())
port = free_port()
url = f"http://127.0.0.1:{port}"
master = MasterSettings(port=port, db=sys.argv[1], log_level="warning")
worker = WorkerSettings(master=url, log_level="warning")
threading.Thread(target=serve, args=(master,), daemon=True).start()
threading.Thread(target=run_worker, args=(worker,), daemon=True).start()
wait_for_workers(url, 1)
with LocalCluster(workers=1, log_level="warning") as client:
    client.health()
assert (sys.getswitchinterval(), gc.get_threshold()) == defaults
"""


def test_a_program_that_embeds_herder_keeps_its_own_settings(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _EMBEDDED, str(tmp_path / "embedded.db")],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
