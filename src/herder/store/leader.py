"""Leadership of the masters that share one PostgreSQL store: a lease row with a term number.

One row (`herder_leader`, name 'master') says which master is active, its advertised URL, its
term and until when (the database's clock: `now()`, never a master's). A master takes it with
one statement when it is free or expired (the term goes up by one), renews it before it expires,
and releases it on a clean shutdown so that a standby takes over at its next look. The lease is
kept on a connection of its own, so that a store call that waits (a long batch, a lost server)
never delays a renewal. Its statements give up after `lock_timeout`: a take-over waits for the
active master's write transactions (they share-lock the row, `PostgresDriver.fence`), never
longer. Imports `store.postgres` only.
"""

from __future__ import annotations

import logging

from psycopg.errors import LockNotAvailable

from herder.store.base import Leader
from herder.store.postgres import PostgresDriver

log = logging.getLogger(__name__)

#: seconds a lease statement may run, and wait for a row lock, before it gives up (and is tried
#: again at the next look): a take-over never waits on a paused master's transaction for long
STATEMENT_LIMIT = 2.0
LOCK_LIMIT = 1.0


class Lease:
    """The lease row, over a connection of its own. Calls block: make them off the event loop,
    one at a time."""

    def __init__(self, url: str, holder: str, advertise_url: str) -> None:
        self.holder = holder
        self.advertise_url = advertise_url
        self._db = PostgresDriver(url, {"lock_timeout": f"{int(LOCK_LIMIT * 1000)}",
                                        "statement_timeout": f"{int(STATEMENT_LIMIT * 1000)}"})

    def take(self, ttl: float) -> int | None:
        """Leadership for `ttl` seconds, with its new term, when it is free, expired, or held by
        this advertised URL; None when another master holds it."""
        try:
            row = self._db.row("take_lead", {**self._mine(), "ttl": float(ttl)})
        except LockNotAvailable:
            # A write under the term before holds the row: the active master's (it holds the
            # lease), or, once its lease ran out, a dead or paused one's, ended here so that
            # the next look takes the lease.
            ended = self._db.rows("end_stale_writers").fetchall()
            if ended:
                log.warning("leadership: ended %d session(s) of an expired term that held the "
                            "lease row", len(ended))
            return None
        return None if row is None else int(row["term"])

    def renew(self, term: int, ttl: float) -> bool:
        """Extend the lease of `term` to `ttl` seconds from now; False once another master took
        over."""
        params = {**self._mine(), "term": term, "ttl": float(ttl)}
        return self._db.row("renew_lead", params) is not None

    def release(self, term: int) -> None:
        """Let the lease of `term` expire now (a clean shutdown)."""
        self._db.write("release_lead", {"holder": self.holder, "term": term})

    def leader(self) -> Leader | None:
        """The current leader, live or expired; None before any master ever led."""
        row = self._db.row("read_lead")
        if row is None:
            return None
        return Leader(int(row["term"]), str(row["url"]), bool(row["live"]))

    def close(self) -> None:
        self._db.close()

    def _mine(self) -> dict[str, object]:
        return {"holder": self.holder, "url": self.advertise_url}
