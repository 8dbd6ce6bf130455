"""The schedule commands: `herder schedule add`, `list` and `rm`.

Each parses, calls the client, prints. Imports `client` (through the task commands' `_client`),
typer, rich and the CLI's `fmt`, `options` and `tasks`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from herder.cli import fmt
from herder.cli.options import Ca, Token, Url, build_params, out, parse_duration
from herder.cli.tasks import _client, _print_json
from herder.config import DEFAULT_URL

app = typer.Typer(
    name="schedule", no_args_is_help=True,
    help="Tasks submitted on a cron schedule or every so often, each firing exactly once.",
)

ScheduleId = Annotated[str, typer.Argument(metavar="ID", help="The schedule's id.")]


@app.command("add")
def add(
    schedule_id: ScheduleId,
    type: Annotated[str, typer.Argument(metavar="TYPE", help="Task type, e.g. primes.")],
    cron: Annotated[str | None, typer.Option(
        "--cron", metavar="EXPR",
        help="A 5-field cron expression, read in --timezone: '0 3 * * *'.")] = None,
    every: Annotated[str | None, typer.Option(
        "--every", metavar="DURATION", help="A period: 30s, 5m, 1h, 1d.")] = None,
    param: Annotated[list[str], typer.Option(
        "--param", "-p", metavar="KEY=VALUE",
        help="A param; the value is parsed as JSON if it can be. Repeatable.",
    )] = [],  # noqa: B006 - typer reads the default, never mutates it
    params: Annotated[str | None, typer.Option(
        "--params", metavar="JSON", help="All params as a JSON object, or @file.json.")] = None,
    timezone: Annotated[str, typer.Option(help="The time zone of --cron.")] = "UTC",
    overlap: Annotated[str, typer.Option(
        metavar="skip|allow",
        help="skip: no firing while the previous task is unfinished (counted); allow: fire.",
    )] = "skip",
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    timeout: Annotated[float | None, typer.Option(
        parser=parse_duration, metavar="DURATION", show_default=False,
        help="Deadline of each task: 30s, 5m, 1.5...")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """Add a schedule (exactly one of --cron and --every); print its next run."""
    if (cron is None) == (every is None):
        raise typer.BadParameter("give exactly one of --cron and --every")
    if overlap not in ("skip", "allow"):
        raise typer.BadParameter(f"--overlap: {overlap!r} is not skip or allow")
    mode: Literal["skip", "allow"] = "skip" if overlap == "skip" else "allow"
    values = build_params(params, param)
    with _client(url, token, ca) as client:
        view = client.schedules.add(
            schedule_id, type, values, cron=cron, every=every, timezone=timezone,
            priority=priority, timeout=timeout, overlap=mode,
        )
    print(f"{view['id']}: next run {fmt.fmt_time(view['next_run_at'])}", flush=True)


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """List the schedules with their next run and their last task."""
    with _client(url, token, ca) as client:
        schedules = client.schedules.list()
    if as_json:
        _print_json(schedules)
        return
    from rich.table import Column, Table

    table = Table(Column("id", no_wrap=True), "type", "when", "next run", "last run",
                  "last task", "skipped")
    for s in schedules:
        when = f"cron {s['cron']} {s['timezone']}" if s["cron"] else f"every {s['every']}"
        table.add_row(s["id"], s["type"], when, fmt.fmt_time(s["next_run_at"]),
                      fmt.fmt_time(s["last_run_at"]), s["last_task_id"] or "",
                      str(s["skipped"]))
    out.print(table)


@app.command("rm")
def rm(schedule_id: ScheduleId, url: Url = DEFAULT_URL, token: Token = None,
       ca: Ca = None) -> None:
    """Delete a schedule; the tasks it fired stay."""
    with _client(url, token, ca) as client:
        client.schedules.remove(schedule_id)
