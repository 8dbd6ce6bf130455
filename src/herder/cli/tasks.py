"""The task commands: `submit`, `watch`, `status`, `list`, `result`, `cancel`, `delete` and
`logs`.

Each parses, calls the client, prints. Results and log lines go to stdout; errors and the live
display to stderr, so that `herder submit ... --watch > result.json` keeps the result alone.
Imports `client`, `instants`, typer, rich and the CLI's `fmt`, `live` and `options`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from herder.cli import fmt
from herder.cli.options import Ca, Token, Url, build_params, err, fail, out, parse_duration
from herder.config import DEFAULT_URL
from herder.errors import ClientError
from herder.instants import parse_instant

# The client (httpx) and the live display (rich.live) are imported by the commands that use
# them: `herder master` and `herder worker` load this module too, and should not pay for them.
if TYPE_CHECKING:
    from herder.client import Client, TaskHandle

TaskId = Annotated[str, typer.Argument(metavar="ID")]
Plain = Annotated[bool, typer.Option(
    "--plain", envvar="HERDER_PLAIN",
    help="Plain progress lines instead of a live bar (the default without a terminal).")]


@contextlib.contextmanager
def _client(url: str, token: str | None, ca: str | None) -> Iterator[Client]:
    """A client whose errors end the command with `error: ...` and exit code 1."""
    from herder.client import Client, MasterUnreachable

    try:
        with Client(url, token, ca=ca) as client:
            yield client
    except MasterUnreachable as exc:
        fail(f"{exc} (is it running? set --url or HERDER_URL)")
    except FileNotFoundError as exc:  # the --ca file
        fail(str(exc))
    except ClientError as exc:
        fail(exc.message)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)


def report_outcome(handle: TaskHandle, task: Mapping[str, Any]) -> int:
    """Print the result (stdout) or the error (stderr) of a finished task; return the exit code."""
    if task.get("state") == "succeeded":
        _print_json(handle.result(timeout=0))
        return 0
    error = task.get("error") or {}
    where = ", ".join(f"{k} {error[k]}" for k in ("subtask", "worker", "attempt")
                      if error.get(k) is not None)
    message = f"task {handle.id} {task.get('state')}"
    if error.get("message"):
        message += f": {error['message']}"
    err.print(message + (f" ({where})" if where else ""), markup=False)
    if error.get("traceback"):
        err.print(str(error["traceback"]).rstrip(), markup=False)
    return 1


def _watch(handle: TaskHandle, plain: bool) -> int:
    from herder.cli.live import follow

    try:
        return report_outcome(handle, follow(handle, err, plain=True if plain else None))
    except KeyboardInterrupt:
        err.print(f"stopped watching; task {handle.id} goes on "
                  f"(stop it with: herder cancel {handle.id})", markup=False)
        return 130


def submit(
    type: Annotated[str, typer.Argument(metavar="TYPE", help="Task type, e.g. primes.")],
    param: Annotated[list[str], typer.Option(
        "--param", "-p", metavar="KEY=VALUE",
        help="A param; the value is parsed as JSON if it can be. Repeatable.",
    )] = [],  # noqa: B006 - typer reads the default, never mutates it
    params: Annotated[str | None, typer.Option(
        "--params", metavar="JSON", help="All params as a JSON object, or @file.json.")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    timeout: Annotated[float | None, typer.Option(
        parser=parse_duration, metavar="DURATION", show_default=False,
        help="Deadline of the whole task: 30s, 5m, 1.5...")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Task id (default: generated).")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="TIME", show_default=False,
        help="Start no earlier than this ISO 8601 time with a zone (2026-12-24T18:00:00Z) or "
             "UNIX timestamp; until then the task is scheduled.")] = None,
    in_: Annotated[float | None, typer.Option(
        "--in", parser=parse_duration, metavar="DURATION", show_default=False,
        help="Start no earlier than this long from now: 30s, 10m, 2h, 1d.")] = None,
    label: Annotated[list[str], typer.Option(
        "--label", "-l", metavar="LABEL",
        help="Run its subtasks only on workers started with this --label (beyond its type's "
             "labels). Repeatable: a worker needs every one.",
    )] = [],  # noqa: B006 - typer reads the default, never mutates it
    max_parallel: Annotated[int | None, typer.Option(
        "--max-parallel", min=1, metavar="N", show_default=False,
        help="At most N of its subtasks run at once.")] = None,
    watch: Annotated[bool, typer.Option(
        "--watch", "-w", help="Follow progress and logs live, then print the result.")] = False,
    plain: Plain = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """Submit a task; print its id (and with --watch, its progress and result)."""
    values = build_params(params, param)
    not_before = _not_before(at, in_)
    with _client(url, token, ca) as client:
        handle = client.submit(
            type, values, priority=priority, timeout=timeout, id=id, not_before=not_before,
            max_parallel=max_parallel, labels=label,
        )
        print(handle.id, flush=True)
        if watch:
            raise typer.Exit(_watch(handle, plain))


def _not_before(at: str | None, in_: float | None) -> float | None:
    """The time `--at` or `--in` names, as a UNIX timestamp (`--in` from now)."""
    if at is not None and in_ is not None:
        raise typer.BadParameter("give --at or --in, not both")
    if in_ is not None:
        return time.time() + in_
    if at is None:
        return None
    try:
        return parse_instant(at)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--at") from None


def watch(task_id: TaskId, plain: Plain = False, url: Url = DEFAULT_URL,
          token: Token = None, ca: Ca = None) -> None:
    """Follow a task live (progress, subtasks, elapsed time, ETA, latest log lines), then print
    its result; exit 1 unless it succeeded."""
    with _client(url, token, ca) as client:
        raise typer.Exit(_watch(client.get(task_id), plain))


def status(
    task_id: TaskId,
    as_json: Annotated[bool, typer.Option("--json", help="The task as JSON.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """Show a task's state, progress and error."""
    with _client(url, token, ca) as client:
        task: Mapping[str, Any] = client.get(task_id).status()
    if as_json:
        _print_json(task)
        return
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    rows = [
        ("id", task.get("id")), ("type", task.get("type")),
        ("state", fmt.styled_state(task.get("state"))), ("priority", task.get("priority")),
        ("progress", f"{fmt.fmt_progress(task)} subtasks"),
        ("eta", fmt.fmt_eta(task.get("eta_seconds")) if not fmt.is_final(task) else ""),
        ("timeout", task.get("timeout")),
        ("max parallel", task.get("max_parallel")),
        ("labels", " ".join(task.get("labels") or [])),
        ("waiting for", task.get("waiting_for")),
        ("created", fmt.fmt_time(task.get("created_at"))),
        ("not before", fmt.fmt_time(task.get("not_before"))),
        ("started", fmt.fmt_time(task.get("started_at"))),
        ("finished", fmt.fmt_time(task.get("finished_at"))),
        ("error", (task.get("error") or {}).get("message")),
    ]
    for key, value in rows:
        if value not in (None, ""):
            grid.add_row(f"[bold]{key}[/]", str(value))
    out.print(grid)


def list_(
    state: Annotated[str | None, typer.Option(help=f"One of: {', '.join(fmt.STATES)}.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Task type.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """List tasks, newest first, with their progress and ETA."""
    with _client(url, token, ca) as client:
        tasks = client.list_tasks(state=state, type=type, limit=limit)
    if as_json:
        _print_json(tasks)
        return
    from rich.table import Table

    table = Table("id", "type", "state", "priority", "progress", "eta", "created")
    for t in tasks:
        table.add_row(str(t.get("id")), str(t.get("type")), fmt.styled_state(t.get("state")),
                      str(t.get("priority")), fmt.fmt_progress(t),
                      "" if fmt.is_final(t) else fmt.fmt_eta(t.get("eta_seconds")),
                      fmt.fmt_time(t.get("created_at")))
    out.print(table)


def result(
    task_id: TaskId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the task to finish.")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """Print a succeeded task's result as JSON; exit 1 (with the error) if it did not succeed."""
    with _client(url, token, ca) as client:
        handle = client.get(task_id)
        task = handle.wait() if wait else (handle.task or handle.status())
        if not fmt.is_final(task):
            fail(f"task {task_id} is {task.get('state')}: no result yet (use --wait)")
        raise typer.Exit(report_outcome(handle, task))


def cancel(task_id: TaskId, url: Url = DEFAULT_URL, token: Token = None, ca: Ca = None) -> None:
    """Cancel a task: queued subtasks are dropped, running ones told to stop."""
    from herder.client import TaskHandle

    with _client(url, token, ca) as client:
        task = TaskHandle(client, task_id).cancel()
    out.print(f"{task.get('id')} {fmt.styled_state(task.get('state'))}")


def delete(task_id: TaskId, url: Url = DEFAULT_URL, token: Token = None, ca: Ca = None) -> None:
    """Delete a finished task now, with its subtasks, results and logs."""
    with _client(url, token, ca) as client:
        client.delete(task_id)
    out.print(f"{task_id} deleted", markup=False)


def _print_log(record: Mapping[str, Any]) -> None:
    out.print(fmt.log_text(record), markup=False, style="yellow" if fmt.is_marker(record) else None)


def logs(
    task_id: TaskId,
    since: Annotated[int, typer.Option(help="Only lines after this sequence number.")] = 0,
    follow_: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines as they come, until the task finishes.")
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca: Ca = None,
) -> None:
    """Print a task's log lines (time, level, \\[subtask attempt worker], message)."""
    from herder.client import StreamUnavailable, TaskHandle

    with _client(url, token, ca) as client:
        handle = TaskHandle(client, task_id)
        # The stored lines first, as a list: it starts with the dropped-records marker if the
        # master's bound dropped some (the live stream only has the lines themselves).
        for record in handle.logs(since):
            _print_log(record)
            since = max(since, int(record.get("seq") or 0))
        if not follow_:
            return
        try:
            for record in handle.logs(since, follow=True):
                _print_log(record)
                since = max(since, int(record.get("seq") or 0))
        except StreamUnavailable:
            _poll_logs(handle, since)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _poll_logs(handle: TaskHandle, since: int) -> None:
    """`logs --follow` against a master that will not stream: read new pages until the end."""
    while True:
        # Read the state before the logs: lines logged before the end are then all seen.
        finished = fmt.is_final(handle.status())
        for record in handle.logs(since):
            _print_log(record)
            since = max(since, int(record.get("seq") or 0))
        if finished:
            return
        time.sleep(0.5)
