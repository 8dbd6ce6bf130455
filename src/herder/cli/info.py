"""The cluster commands: `workers`, `drain` and `types`. Imports `client`, typer, rich and the CLI's
`fmt`, `options` and `tasks` (for its client wrapper)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from herder.cli import fmt
from herder.cli.options import AdminCallToken, Ca, Token, Url, out
from herder.cli.tasks import _client, _print_json
from herder.config import DEFAULT_URL


def workers(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """List connected workers: busy/slots, pool, types, labels and last heartbeat."""
    with _client(url, token, ca) as client:
        found = client.workers()
    if as_json:
        _print_json(found)
        return
    from rich.table import Table

    table = Table("name", "state", "busy/slots", "pool", "types", "labels", "heartbeat")
    now = time.time()
    for w in found:
        beat = w.get("last_heartbeat")
        busy, slots = w.get("busy"), w.get("slots")
        load = f"{busy}/{slots}"
        if isinstance(busy, int) and isinstance(slots, int) and slots and busy >= slots:
            load = f"[bold]{load}[/]"
        table.add_row(str(w.get("name")), fmt.styled_state(w.get("state")), load,
                      str(w.get("pool")), " ".join(w.get("types") or []),
                      " ".join(w.get("labels") or []),
                      fmt.fmt_age(now - beat) if isinstance(beat, int | float)
                      else fmt.fmt_time(beat))
    out.print(table)


def drain(
    name: Annotated[str, typer.Argument(help="The worker's name (or id), as `workers` lists it.")],
    url: Url = DEFAULT_URL,
    token: AdminCallToken = None,
    ca: Ca = None,
) -> None:
    """Ask a worker to finish what it runs, take no more and stop (needs the admin token)."""
    with _client(url, token, ca) as client:
        asked = client.drain_worker(name)
    for w in asked:
        out.print(f"{w.get('name')} ({w.get('id')}) {fmt.styled_state(w.get('state'))}")


def _describe_params(schema: dict[str, Any]) -> str:
    required = set(schema.get("required") or [])
    parts = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or "any"
        text = f"{name}: {kind}"
        if name not in required and "default" in prop:
            text += f" = {json.dumps(prop['default'])}"
        parts.append(text)
    return ", ".join(parts) or "(any JSON object)"


def types(
    as_json: Annotated[bool, typer.Option("--json", help="Include params JSON schemas.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """List the task types the master knows, with their params."""
    with _client(url, token, ca) as client:
        found = client.types()
    if as_json:
        _print_json(found)
        return
    from rich.table import Table

    table = Table("name", "params", "max retries", "subtask timeout")
    for t in found:
        table.add_row(str(t.get("name")), _describe_params(t.get("params_schema") or {}),
                      str(t.get("max_retries")), str(t.get("subtask_timeout") or "-"))
    out.print(table)
