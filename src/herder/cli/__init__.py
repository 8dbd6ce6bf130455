"""The `herder` command: parse, build settings or a client, call one entry point, print.

The commands live in `server` (master, worker, up), `tasks` (submit, watch, status, list, result,
cancel, logs), `schedules` (schedule add, list, rm) and `info` (workers, drain, types); the live
display of a task in `live`; shared options and parsing in `options`, text formatting in `fmt`.
This module only registers the commands on `app`, in help order. Every option has a HERDER_*
environment twin. Only the CLI prints.
Imports `cluster`, `client`, `config`, `errors`, typer and rich.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from herder.cli import info, schedules, server, tasks
from herder.cli.options import build_params, is_loopback, parse_duration, parse_param

__all__ = ["app", "build_params", "follow", "is_loopback", "main", "parse_duration",
           "parse_param"]


def __getattr__(name: str) -> object:
    # `follow` loads rich.live and the client: only for those who use it (not `herder master`).
    if name == "follow":
        from herder.cli.live import follow

        return follow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

app = typer.Typer(
    name="herder",
    help="herder: split work across worker processes and machines, and watch it happen.",
    no_args_is_help=True,
    # Locals in tracebacks could show a token.
    pretty_exceptions_show_locals=False,
)

_COMMANDS: list[tuple[str, Callable[..., None], str | None]] = [
    ("Run", server.master, None), ("Run", server.worker, None), ("Run", server.up, None),
    ("Tasks", tasks.submit, None), ("Tasks", tasks.watch, None), ("Tasks", tasks.status, None),
    ("Tasks", tasks.list_, "list"), ("Tasks", tasks.result, None), ("Tasks", tasks.cancel, None),
    ("Tasks", tasks.delete, None), ("Tasks", tasks.logs, None),
    ("Cluster", info.workers, None), ("Cluster", info.drain, None), ("Cluster", info.types, None),
]
for panel, command, name in _COMMANDS:
    app.command(name, rich_help_panel=panel)(command)
app.add_typer(schedules.app, rich_help_panel="Tasks")

def main() -> None:
    app(prog_name="herder")
