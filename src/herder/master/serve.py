"""Start a master: open the store, load the task types, run the ASGI app on uvicorn, over TLS
when given a certificate (checked here first, so that a bad one is an error naming the file).

The app serves a `Seat`: on a SQLite store, this process's one master (the file locked against
a second one); on a PostgreSQL store, the master of each term of leadership this process wins,
built here from the store with its writes fenced by that term (docs/failover.md).

Imports `config`, `errors`, `store`, `tasktype`, `protocol.frames`, `protocol.redact` and the
master's `core`, `limits`, `seat` and `web`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Callable

import uvicorn

from herder.config import MasterSettings
from herder.errors import HerderError
from herder.master.core import Master
from herder.master.limits import check_limits
from herder.master.seat import Seat, advertised_url, holder_id
from herder.master.web import create_app
from herder.protocol.frames import MAX_FRAME_BYTES
from herder.protocol.redact import hide_authorization
from herder.store import Store, is_shared, lock_for_one_master, open_lease, open_store
from herder.tasktype import Registry

log = logging.getLogger(__name__)


def build_master(settings: MasterSettings) -> Master:
    """The one master of a store that has no leadership (SQLite), as at a (re)start."""
    check_limits(settings)
    return Master(settings, open_store(settings.db), Registry.from_modules(settings.tasks))


async def master_of_term(
    settings: MasterSettings, term: int, in_office: Callable[[], bool],
    on_deposed: Callable[[], None],
) -> Master:
    """The master of a term of leadership, built from the store as at a restart, every write of
    its store fenced by the term (a refused one calls `on_deposed`)."""

    def fenced_store() -> Store:
        store = open_store(settings.db)
        # the server ends a transaction left idle (this master paused) well before a standby
        # may take over, so that its lock on the lease row never holds a take-over back
        store.fence(term, on_deposed, idle_timeout=settings.failover_timeout / 3)
        return store

    store = await asyncio.to_thread(fenced_store)
    return Master(settings, store, Registry.from_modules(settings.tasks), in_office)


def build_seat(settings: MasterSettings) -> Seat:
    """What the app serves: the master of a SQLite store, locked for it alone, or a seat in the
    leadership of a PostgreSQL store. The settings and task types are checked here, at start,
    whatever the role."""
    check_limits(settings)
    Registry.from_modules(settings.tasks)
    if not is_shared(settings.db):
        release = lock_for_one_master(settings.db)

        async def sole_master(*_: object) -> Master:
            return build_master(settings)

        return Seat(settings, sole_master, release=release)
    open_store(settings.db).close()  # the schema made or upgraded, the lease's table with it
    lease = open_lease(settings.db, holder_id(), advertised_url(settings))
    return Seat(settings, functools.partial(master_of_term, settings), lease)


def check_tls(cert: str | None, key: str | None) -> None:
    """Refuse a certificate or key that uvicorn could not serve, naming the file at fault,
    instead of uvicorn's traceback (or its password prompt, for an encrypted key)."""
    if cert is None:
        if key is not None:
            raise HerderError("--tls-key needs --tls-cert")
        return
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise HerderError(f"{flag}: cannot read {path!r}: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_verify_locations(cafile=cert)
    except ssl.SSLError:
        raise HerderError(f"--tls-cert: no PEM certificate in {cert!r}") from None
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise HerderError(
                f"--tls-key: the key in {key or cert!r} is not the key of the certificate in "
                f"{cert!r}"
            ) from None
        flag = "--tls-key" if key else "--tls-cert (no --tls-key given)"
        raise HerderError(
            f"{flag}: no unencrypted PEM private key in {key or cert!r}"
        ) from None


def serve(settings: MasterSettings) -> None:
    """Run the master in the foreground until SIGINT/SIGTERM."""
    check_tls(settings.tls_cert, settings.tls_key)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not settings.token:
        log.warning(
            "no --token: any local user (and any program on this machine) can submit, read and "
            "cancel tasks here; give --token (docs/security.md)"
        )
    app = create_app(build_seat(settings))
    # uvicorn logs the worker channel's handshake at debug level through its error logger
    hide_authorization(logging.getLogger("uvicorn.error"))
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        ws_max_size=MAX_FRAME_BYTES,
        ws_per_message_deflate=False,
        ssl_certfile=settings.tls_cert,
        ssl_keyfile=settings.tls_key,
    )
