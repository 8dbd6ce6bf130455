"""The `herder` command: parse, build settings or a client, call one entry point, print.

The commands live in `server` (master, worker, up), `tasks` (submit, watch, status, list,
result, cancel, logs) and `info` (workers, types); the live display of a task in `live`; shared
options and parsing in `options`, text formatting in `fmt`. This module only registers the
commands on `app`, in help order. Every option has a HERDER_* environment twin. Only the CLI
prints. Imports `cluster`, `client`, `config`, `errors`, typer and rich.
"""

from __future__ import annotations

import typer

from herder.cli import info, server, tasks
from herder.cli.live import follow
from herder.cli.options import build_params, is_loopback, parse_duration, parse_param

__all__ = ["app", "build_params", "follow", "is_loopback", "main", "parse_duration",
           "parse_param"]

app = typer.Typer(
    name="herder",
    help="herder: split work across worker processes and machines, and watch it happen.",
    no_args_is_help=True,
    # Locals in tracebacks could show a token.
    pretty_exceptions_show_locals=False,
)

for command in (server.master, server.worker, server.up):
    app.command(rich_help_panel="Run")(command)
for command in (tasks.submit, tasks.watch, tasks.status):
    app.command(rich_help_panel="Tasks")(command)
app.command("list", rich_help_panel="Tasks")(tasks.list_)
for command in (tasks.result, tasks.cancel, tasks.logs):
    app.command(rich_help_panel="Tasks")(command)
for command in (info.workers, info.types):
    app.command(rich_help_panel="Cluster")(command)


def main() -> None:
    app(prog_name="herder")
