"""The master a process serves, and whether it is the active one (docs/failover.md).

On SQLite there is one master per store, always active. On PostgreSQL several masters share the
store and one leads: the process keeps its web server, and its `Seat` holds a `Master` only
while it holds the lease (`store.leader`). A standby looks at the lease every tenth of
--failover-timeout and takes it once it is free or expired; it then builds a fresh `Master` from
the store, exactly as a restarted master does (recovery included), with every write of its store
fenced by its term. An active master renews the lease every third of its length; when a renewal
fails or does not come back before the lease would run out (the database unreachable, the lease
taken), or when the store refuses a write (`Deposed`), it stops dispatching and answering at
once (`serving` turns False: the `Guard` answers 503, the dispatcher sends nothing), then steps
down: its `Master` is stopped, which closes the workers' connections, and it is a standby again.

The lease is shorter than --failover-timeout by one look of a standby, so that a standby takes
over within --failover-timeout of the active master's last renewal. The active master's own idea
of its lease ends before the database's (it counts from before its statement was sent), so it
stops before any standby may start. Imports `config`, `errors`, `store` and the master's `core`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from herder.config import MasterSettings
from herder.master.core import Master
from herder.store.base import Leader

if TYPE_CHECKING:  # psycopg is needed for a PostgreSQL store only
    from herder.store.leader import Lease

log = logging.getLogger(__name__)

T = TypeVar("T")

#: what builds the master of a term from the store: (term, in_office, on_deposed)
Builder = Callable[[int, Callable[[], bool], Callable[[], None]], Awaitable[Master]]
Role = Literal["active", "standby"]

#: seconds a standby tells clients to wait before they ask again (Retry-After)
RETRY_AFTER = 1.0


def advertised_url(settings: MasterSettings) -> str:
    """--advertise-url, else this master's own address (the host name when it is bound to every
    address, which no one can connect to as such)."""
    if settings.advertise_url:
        return settings.advertise_url.rstrip("/")
    scheme = "https" if settings.tls_cert else "http"
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


class Seat:
    """The `master` this process serves (None on a standby) and its role."""

    def __init__(
        self,
        settings: MasterSettings,
        build: Builder,
        lease: Lease | None = None,
        release: Callable[[], None] = lambda: None,
    ) -> None:
        """With a `lease` (the leadership of a shared store), `build` makes the master of each
        term won; without, it makes the one master, always active (given term 0). `release` is
        called once stopped (a SQLite store's lock)."""
        self.settings = settings
        self.url = advertised_url(settings)
        self.master: Master | None = None
        self._build = build
        self._lease = lease
        self._release = release
        timeout = settings.failover_timeout
        self._look_every = timeout / 10
        #: the lease's length: a standby's look shorter than the failover timeout
        self._ttl = timeout - self._look_every
        self._renew_every = self._ttl / 3
        #: the term this master holds (None: none), and until when, by its own clock
        self._term: int | None = None
        self._valid_until = 0.0
        #: the leader as a standby last read it
        self._leader: Leader | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="herder-lease")
        self.metrics = CollectorRegistry(auto_describe=True)
        self.fenced_writes = Counter(
            "herder_fenced_writes", "Store writes refused because this master's term was over",
            registry=self.metrics,
        )
        Gauge("herder_master_active", "1 while this master is the active one",
              registry=self.metrics).set_function(lambda: float(self.serving))
        Gauge("herder_master_term", "The term of leadership this master serves, or knows of",
              registry=self.metrics).set_function(lambda: float(self.term))

    # -- what the web layer asks -----------------------------------------------------------

    @property
    def serving(self) -> bool:
        """True when this master is the active one, sure of its lease."""
        return self.master is not None and self._in_office()

    @property
    def role(self) -> Role:
        return "active" if self.serving else "standby"

    @property
    def term(self) -> int:
        """The term served (active), else the last one seen; 0 without leadership."""
        if self._lease is None:
            return 0
        if self.serving and self._term is not None:
            return self._term
        return self._leader.term if self._leader is not None else 0

    @property
    def active_url(self) -> str | None:
        """The advertised URL of the active master, when one is known to be active."""
        if self.serving:
            return self.url
        leader = self._leader
        return leader.url if leader is not None and leader.live else None

    def exposition(self) -> bytes:
        """The leadership's metrics; the master's own follow while one is served."""
        own = generate_latest(self.metrics)
        return own + (self.master.stats.exposition() if self.master is not None else b"")

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._lease is None:
            master = await self._build(0, self._in_office, lambda: None)
            await master.start()
            self.master = master
            return
        self._tasks.append(asyncio.create_task(self._lead()))

    async def stop(self) -> None:
        """Stop the master served, and let a standby take over at once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        term, master = self._term, self.master
        self._term, self.master = None, None
        if master is not None:
            await master.stop()
        if self._lease is not None:
            if term is not None:
                with contextlib.suppress(Exception):
                    await self._blocking(self._lease.release, term)
            await self._blocking(self._lease.close)
        self._executor.shutdown(wait=False)
        self._release()

    # -- leadership ------------------------------------------------------------------------

    def _in_office(self) -> bool:
        if self._lease is None:
            return True
        return self._term is not None and time.monotonic() < self._valid_until

    async def _lead(self) -> None:
        while True:
            if self._term is None:
                await self._try_to_lead()
                if self._term is None:
                    await asyncio.sleep(self._look_every)
            else:
                left = self._valid_until - time.monotonic()
                await asyncio.sleep(max(0.0, min(self._renew_every, left / 2)))
                await self._renew()

    async def _try_to_lead(self) -> None:
        assert self._lease is not None
        sent = time.monotonic()
        try:
            term = await self._blocking(self._lease.take, self._ttl)
            if term is None:
                self._leader = await self._blocking(self._lease.leader)
                return
        except Exception as exc:
            log.warning("leadership: cannot reach the store: %s", exc)
            return
        self._term, self._valid_until = term, sent + self._ttl
        log.info("leadership: term %d taken; taking up the store's tasks", term)
        self._tasks.append(asyncio.create_task(self._take_office(term)))

    async def _take_office(self, term: int) -> None:
        """Build the term's master from the store, as a restarted master does, and serve it."""
        loop = asyncio.get_running_loop()

        def deposed() -> None:  # called on the store's thread
            self.fenced_writes.inc()
            loop.call_soon_threadsafe(self._deposed, term)

        try:
            master = await self._build(term, self._in_office, deposed)
            await master.start()
        except Exception:
            log.exception("leadership: term %d: the master could not start", term)
            if self._term == term:
                await self._step_down("its master could not start")
            return
        if self._term != term:  # stepped down meanwhile
            await master.stop()
            return
        self.master = master
        log.info("leadership: term %d: active, serving as %s", term, self.url)

    async def _renew(self) -> None:
        assert self._lease is not None and self._term is not None
        term, sent = self._term, time.monotonic()
        try:
            left = self._valid_until - sent
            renewed = await asyncio.wait_for(
                self._blocking(self._lease.renew, term, self._ttl), left
            )
        except Exception as exc:  # unreachable, or no answer before the lease runs out
            await self._step_down(f"the lease could not be renewed ({exc or type(exc).__name__})")
            return
        if self._term != term:
            return
        if not renewed:
            await self._step_down("another master took the lease")
            return
        self._valid_until = sent + self._ttl

    def _deposed(self, term: int) -> None:
        if self._term == term:
            self._tasks.append(asyncio.create_task(self._step_down("the store refused a write")))

    async def _step_down(self, why: str) -> None:
        term, master = self._term, self.master
        if term is None:
            return
        self._term, self.master = None, None
        log.warning("leadership: term %d over: %s; standing by", term, why)
        if master is not None:
            # Its writes are refused from now on; the stop closes the workers' connections,
            # which then go to the active master. Not waited for past the lease: a store that
            # does not answer must not keep this master from taking over again.
            stopping = asyncio.create_task(master.stop())
            await asyncio.wait({stopping}, timeout=self._ttl)
        self._tasks = [t for t in self._tasks if not t.done()]

    def _blocking(self, fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
        """`fn(*args)` on the lease's own thread."""
        return asyncio.wrap_future(self._executor.submit(fn, *args))


def holder_id() -> str:
    """This process, as the lease row names its holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
