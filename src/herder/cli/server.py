"""The server commands: `master`, `worker` and `up`. Each builds a frozen settings object and
hands it to `herder.master.serve`, `herder.worker.run_worker` or `LocalCluster`; `master` also
tunes the interpreter (`tuning`), since its process is ours.

Imports `cluster`, `forked`, `lifeline`, `config`, `errors`, `store.base` (to show a URL without its
password) and the CLI's `options` and `tuning`; inside functions, `master`, `worker`, `examples`
and `store.sqlite`, so that client commands do not pay for the server's imports.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from herder.cli import options as opt
from herder.cli.options import err, fail, is_loopback, out
from herder.cli.tokens import RoleTokens, role_tokens
from herder.cli.tuning import tune_master_process
from herder.config import (
    DEFAULT_URL,
    MasterSettings,
    WorkerSettings,
    parse_speculate_after,
)
from herder.errors import HerderError
from herder.forked import ForkStarter
from herder.lifeline import watch_parent
from herder.store import redact

if TYPE_CHECKING:  # `up` imports it: it loads the client (httpx), which master and worker skip
    from herder.cluster import LocalCluster

_M = MasterSettings()
_W = WorkerSettings()


def _require_token_off_loopback(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        err.print(f"error: refusing to listen on {host} without a token: anyone who can reach "
                  "it could run tasks. Pass --token (or set HERDER_TOKEN, or give a client "
                  "token in --token-file), or bind to 127.0.0.1.")
        raise typer.Exit(2)


def _tokens(
    token: str | None, worker_token: str | None, admin_token: str | None, token_file: Path | None
) -> RoleTokens:
    """The tokens of the options and the token file, each long enough (else exit 2)."""
    try:
        return role_tokens(RoleTokens(token, worker_token, admin_token), token_file)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def _import_from_cwd() -> None:
    """Let --tasks name a module in the current directory, as `python -m` would (the `herder`
    script's sys.path starts at its own bin directory instead). LocalCluster hands our sys.path on
    to its children, so this reaches `up`'s master and workers too."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )


def master(
    host: opt.Host = _M.host,
    port: Annotated[int, typer.Option(envvar="HERDER_PORT", min=0, max=65535)] = _M.port,
    db: opt.Db = _M.db,
    tasks: opt.Tasks = [],  # noqa: B006 - typer reads the default, never mutates it
    max_pending: opt.MaxPending = _M.max_pending,
    prefetch: opt.Prefetch = _M.prefetch,
    pipeline_below: opt.PipelineBelow = _M.pipeline_below,
    results_in_memory: opt.ResultsInMemory = _M.results_in_memory,
    token: opt.Token = None,
    worker_token: opt.WorkerToken = None,
    admin_token: opt.AdminToken = None,
    token_file: opt.TokenFile = None,
    heartbeat: opt.Heartbeat = _M.heartbeat,
    lease_timeout: opt.LeaseTimeout = _M.lease_timeout,
    max_logs_per_task: opt.MaxLogs = _M.max_logs_per_task,
    keep_finished: opt.KeepFinished = _M.keep_finished,
    speculate_after: opt.SpeculateAfter = "3x",
    speculate_min: opt.SpeculateMin = _M.speculate_min,
    max_body: opt.MaxBody = _M.max_body,
    log_level: opt.LogLevel = "info",
    tls_cert: opt.TlsCert = None,
    tls_key: opt.TlsKey = None,
    max_params: opt.MaxParams = _M.max_params,
    max_subtasks_per_task: opt.MaxSubtasksPerTask = _M.max_subtasks_per_task,
    max_pending_subtasks: opt.MaxPendingSubtasks = _M.max_pending_subtasks,
    allowed_hosts: opt.AllowedHosts = "",
    advertise_url: opt.AdvertiseUrl = None,
    failover_timeout: opt.FailoverTimeout = _M.failover_timeout,
) -> None:
    """Run the master: HTTP API, scheduler and store. Several masters may share a PostgreSQL
    store: one is active, the others stand by and take over when it dies."""
    watch_parent()  # started by `herder up` or a LocalCluster: stop when it dies
    tokens = _tokens(token, worker_token, admin_token, token_file)
    _require_token_off_loopback(host, tokens.client)
    try:
        factor, after = parse_speculate_after(speculate_after)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = MasterSettings(
        host=host, port=port, db=db, tasks=tuple(tasks), max_pending=max_pending,
        prefetch=prefetch, pipeline_below=pipeline_below, results_in_memory=results_in_memory,
        token=tokens.client, worker_token=tokens.worker, admin_token=tokens.admin,
        heartbeat=heartbeat, lease_timeout=lease_timeout,
        max_logs_per_task=max_logs_per_task, keep_finished=keep_finished,
        speculate_factor=factor, speculate_after=after,
        speculate_min=speculate_min, max_body=max_body, log_level=log_level,
        tls_cert=tls_cert, tls_key=tls_key,
        max_params=max_params, max_subtasks_per_task=max_subtasks_per_task,
        max_pending_subtasks=max_pending_subtasks,
        allowed_hosts=opt.parse_allowed_hosts(allowed_hosts),
        advertise_url=advertise_url, failover_timeout=failover_timeout,
    )
    _setup_logging(log_level)
    _import_from_cwd()
    # Imported here so that client commands do not pay for the server's imports.
    from herder.master import serve

    tune_master_process()
    try:
        serve(settings)
    except HerderError as exc:
        fail(str(exc))


def worker(
    master: Annotated[str, typer.Option(
        "--master", envvar=["HERDER_MASTER", "HERDER_URL"],
        help="The master's http(s) URL, or a comma list of the URLs of several masters: the "
        "worker joins the active one.")
    ] = DEFAULT_URL,
    slots: opt.Slots = _W.slots,
    pool: opt.Pool = "thread",
    tasks: opt.Tasks = [],  # noqa: B006
    name: Annotated[str | None, typer.Option(
        envvar="HERDER_WORKER_NAME", show_default=False, help="Default: host-pid.")] = None,
    label: opt.Labels = [],  # noqa: B006
    token: opt.WorkerOwnToken = None,
    drain_timeout: opt.DrainTimeout = _W.drain_timeout,
    cancel_grace: opt.CancelGrace = _W.cancel_grace,
    capture_output: opt.CaptureOutput = False,
    log_level: opt.LogLevel = "info",
    ca: opt.Ca = None,
) -> None:
    """Run a worker: connect to the master and run subtasks in SLOTS slots."""
    watch_parent()  # as in `master`
    try:
        settings = WorkerSettings(
            master=master, slots=slots, pool=pool, tasks=tuple(tasks), labels=tuple(label),
            token=token, drain_timeout=drain_timeout, cancel_grace=cancel_grace,
            log_level=log_level, capture_output=capture_output, ca=ca,
        )
    except ValueError as exc:  # a token too short
        fail(str(exc), 2)
    if name:
        settings = dataclasses.replace(settings, name=name)
    _setup_logging(log_level)
    _import_from_cwd()
    from herder.worker import run_worker  # here for the same reason as in `master`

    try:
        code = run_worker(settings)
    except HerderError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP stop `up` the way Ctrl-C does


def _stop_on_signals() -> None:
    """SIGTERM and a closed terminal (SIGHUP) stop `up` in order, as Ctrl-C does; a SIGHUP
    ignored on purpose (`nohup herder up`) stays ignored."""
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _interrupt)


def up(
    ctx: typer.Context,
    workers: Annotated[int, typer.Option(envvar="HERDER_WORKERS", min=0)] = 2,
    slots: opt.Slots = _W.slots,
    port: Annotated[int, typer.Option(envvar="HERDER_PORT", min=0, max=65535)] = _M.port,
    db: opt.Db = _M.db,
    tasks: opt.Tasks = [],  # noqa: B006
    host: opt.Host = _M.host,
    pool: opt.Pool = "thread",
    label: opt.Labels = [],  # noqa: B006
    token: opt.Token = None,
    admin_token: opt.AdminToken = None,
    token_file: opt.TokenFile = None,
    max_pending: opt.MaxPending = _M.max_pending,
    prefetch: opt.Prefetch = _M.prefetch,
    pipeline_below: opt.PipelineBelow = _M.pipeline_below,
    heartbeat: opt.Heartbeat = _M.heartbeat,
    lease_timeout: opt.LeaseTimeout = _M.lease_timeout,
    max_logs_per_task: opt.MaxLogs = _M.max_logs_per_task,
    keep_finished: opt.KeepFinished = _M.keep_finished,
    speculate_after: opt.SpeculateAfter = "3x",
    speculate_min: opt.SpeculateMin = _M.speculate_min,
    drain_timeout: opt.DrainTimeout = _W.drain_timeout,
    cancel_grace: opt.CancelGrace = _W.cancel_grace,
    capture_output: opt.CaptureOutput = False,
    log_level: opt.LogLevel = "info",
    tls_cert: opt.TlsCert = None,
    tls_key: opt.TlsKey = None,
    ca: opt.Ca = None,
    max_body: opt.MaxBody = _M.max_body,
    max_params: opt.MaxParams = _M.max_params,
    max_subtasks_per_task: opt.MaxSubtasksPerTask = _M.max_subtasks_per_task,
    max_pending_subtasks: opt.MaxPendingSubtasks = _M.max_pending_subtasks,
    allowed_hosts: opt.AllowedHosts = "",
) -> None:
    """Run a master and WORKERS workers here, in the foreground, until Ctrl-C. It makes the
    worker token itself and hands it to its workers."""
    tokens = _tokens(token, None, admin_token, token_file)
    _require_token_off_loopback(host, tokens.client)
    _import_from_cwd()
    from herder.cluster import ClusterError, LocalCluster, connect_host

    hosts = opt.parse_allowed_hosts(allowed_hosts)
    if hosts:  # its own workers reach the master at this address, whatever else is allowed
        hosts += (connect_host(host).strip("[]"),)
    # The master and workers are forks of this process, which imports their code once, instead
    # of three interpreters importing it at the same time (herder.forked).
    cluster = LocalCluster(
        workers=workers, slots=slots, tasks=tasks, pool=pool, port=port, db=db,
        token=tokens.client, admin_token=tokens.admin, worker_token=tokens.worker,
        extra_master_args=[
            "--max-pending", str(max_pending), "--prefetch", str(prefetch),
            "--pipeline-below", str(pipeline_below),
            "--heartbeat", str(heartbeat), "--lease-timeout", str(lease_timeout),
            "--max-logs-per-task", str(max_logs_per_task), "--keep-finished", str(keep_finished),
            "--speculate-after", speculate_after, "--speculate-min", str(speculate_min),
            "--max-body", str(max_body), "--max-params", str(max_params),
            "--max-subtasks-per-task", str(max_subtasks_per_task),
            "--max-pending-subtasks", str(max_pending_subtasks),
            *(["--allowed-hosts", ",".join(hosts)] if hosts else []),
        ],
        extra_worker_args=[
            "--drain-timeout", str(drain_timeout), "--cancel-grace", str(cancel_grace),
            *(["--capture-output"] if capture_output else []),
            *(a for lab in label for a in ("--label", lab)),
        ],
        host=host, log_level=log_level, tls_cert=tls_cert, tls_key=tls_key, ca=ca,
        # Draining workers may take drain-timeout plus cancel-grace; do not kill them sooner.
        stop_timeout=drain_timeout + cancel_grace + 5.0, fork=_fork_starter(ctx),
    )  # fmt: skip
    _stop_on_signals()
    code = 0
    try:
        cluster.start()
        out.print(f"herder is up at {cluster.url} with {workers} worker(s) x {slots} slot(s), "
                  f"db {redact(db)}. Ctrl-C stops it.", markup=False)
        while not (gone := cluster.processes.exited()):
            time.sleep(0.2)
        name, status = gone[0]
        err.print(f"error: {name} exited with code {status}; stopping everything")
        code = 1
    except KeyboardInterrupt:
        err.print(f"stopping: running subtasks get up to {drain_timeout:g} s to finish "
                  "(Ctrl-C again to stop them now)")
    except ClusterError as exc:
        err.print(f"error: {exc}", markup=False)
        code = 1
    finally:
        _stop(cluster, cancel_grace)
    raise typer.Exit(code)


def _fork_starter(ctx: typer.Context) -> ForkStarter:
    """What `up`'s forked children run: the command line `up` itself runs under (the `herder`
    command; its `master` and `worker`), after this process has imported their code."""
    herder_command = ctx.find_root().command

    def run(args: Sequence[str]) -> int:
        herder_command.main(args=list(args), prog_name="herder")
        return 0  # not reached: in standalone mode, click ends with SystemExit and its code

    return ForkStarter(run, _preload_master, _preload_worker)


def _preload_master() -> None:
    """Import what `herder master` imports, and what the master imports only when it starts
    (uvicorn's protocols, the store, the examples), so that a forked master finds it loaded."""
    import uvicorn.lifespan.on
    import uvicorn.loops.uvloop
    import uvicorn.protocols.http.httptools_impl
    import uvicorn.protocols.websockets.websockets_sansio_impl  # noqa: F401

    import herder.examples
    import herder.master
    import herder.store.sqlite  # noqa: F401


def _preload_worker() -> None:
    import herder.worker  # noqa: F401


def _stop(cluster: LocalCluster, cancel_grace: float) -> None:
    """Stop in order; each further Ctrl-C hurries: a second SIGTERM makes the workers cancel and
    hand back their subtasks at once, a third kills everything."""
    try:
        cluster.stop()
        return
    except KeyboardInterrupt:
        err.print("stopping now: running subtasks are cancelled (Ctrl-C again to kill)")
    try:
        cluster.stop(timeout=cancel_grace + 5.0)
    except KeyboardInterrupt:
        cluster.kill()
