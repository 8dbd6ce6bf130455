"""The masters a client may talk to, and the failover plan of one request, sans I/O.

A client is given one master URL or several (a sequence, or a comma list as `HERDER_URL`
holds). It sticks to the master that answered last. A request goes to that master first and
moves on to the next, in the order given, when one cannot be reached (nothing was sent:
refused, unknown host, TLS refused, no connection in time) or answers 503. A request that may
have reached a master (the connection broke or went silent after it was sent) goes again only
if it is idempotent, for a submission only if it carries an id: otherwise the error is raised,
so that a task is never submitted twice unawares. A connection that broke after the request
went out is tried once more on a new connection to the same master first, since a kept-alive
connection that the server closed just then is the usual cause.

With several masters, a request that every master turned away unread (unreachable before it
was sent, or a 503 of a standby) goes round them again after a pause, until `patience` seconds
have passed: during a failover no master is active for a few seconds, and a caller should see a
slow answer rather than an error. A single master's failure is raised at once, as before.

Imports the client's `errors`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from herder.client.errors import MasterUnreachable

__all__ = ["Attempts", "Master", "Route", "normalize_url", "parse_urls"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: str) -> str:
    """`localhost:8700` -> `http://localhost:8700`; no trailing slash."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    return url.rstrip("/")


def parse_urls(urls: str | Sequence[str]) -> list[str]:
    """The master URLs of a URL, a comma list of them, or a sequence of either, normalized."""
    items = [urls] if isinstance(urls, str) else list(urls)
    found = [normalize_url(part) for item in items for part in item.split(",") if part.strip()]
    if not found:
        raise ValueError("no master URL given")
    return list(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class Master:
    """One master's URL, taken apart once for the transport."""

    url: str
    scheme: str
    #: without the brackets of an IPv6 address, as a socket wants it
    host: str
    port: int
    #: the `Host` header's value
    authority: str
    #: a path the master's API is mounted under ("" at the root)
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Master:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        try:
            port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ValueError(f"{url!r}: {exc}") from None
        host = parts.hostname
        authority = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            authority += f":{port}"
        return cls(url, parts.scheme, host, port, authority, parts.path.rstrip("/"))


#: pauses between rounds of the masters, growing to the last
_ROUND_PAUSES = (0.1, 0.25, 0.5, 1.0)


class Route:
    """The masters in the order given, the one the client sticks to (`current`), and the
    seconds a request may go round them while none takes it (`patience`)."""

    def __init__(self, urls: Sequence[str], patience: float = 0.0) -> None:
        self.masters = [Master.parse(url) for url in urls]
        self.current = 0
        self.patience = patience if len(self.masters) > 1 else 0.0

    def attempts(self, idempotent: bool) -> Attempts:
        return Attempts(self, idempotent)


class Attempts:
    """The plan of one request: which master to try next, whether a failure ends it."""

    __slots__ = ("_again", "_deadline", "_failures", "_idempotent", "_order", "_retried",
                 "_rounds", "_route", "index", "pause")

    def __init__(self, route: Route, idempotent: bool) -> None:
        self._route = route
        self._order = self._round()
        self._idempotent = idempotent
        self._failures: list[tuple[str, str]] = []
        self._again = False
        self._retried = False
        self._rounds = 0
        self._deadline = time.monotonic() + route.patience if route.patience else 0.0
        #: the master being tried
        self.index = route.current
        #: seconds to wait before trying `index` (between two rounds of the masters)
        self.pause = 0.0

    def _round(self) -> list[int]:
        n = len(self._route.masters)
        start = self._route.current
        return [(start + k) % n for k in range(n - 1, -1, -1)]  # popped from the end

    def next(self) -> int | None:
        """The index of the master to try next (after `pause` seconds); None when all were
        tried and no other round is due."""
        self.pause = 0.0
        if self._again:
            self._again = False
        elif self._order or self._another_round():
            self.index = self._order.pop()
        else:
            return None
        return self.index

    def _another_round(self) -> bool:
        """Start a new round of the masters when every one turned the request away unread and
        the route's patience lasts."""
        if not self._deadline or time.monotonic() >= self._deadline:
            return False
        self.pause = _ROUND_PAUSES[min(self._rounds, len(_ROUND_PAUSES) - 1)]
        self._rounds += 1
        self._order = self._round()
        return True

    def failed(self, reason: str, *, sent: bool, broken: bool) -> None:
        """The attempt failed: `sent` when the request may have reached the master, `broken`
        when its connection broke (rather than timed out). Raises MasterUnreachable when the
        request must not go again."""
        self._failures.append((self._route.masters[self.index].url, reason))
        if sent and not self._idempotent:
            raise self.error()
        if sent and broken and not self._retried:
            self._retried = self._again = True

    def answered(self, status: int) -> bool:
        """True to take the answer, and stick to its master; False to try the next master (a
        503, while another master is left to ask)."""
        if status == 503 and (self._order or time.monotonic() < self._deadline):
            self._failures.append((self._route.masters[self.index].url, "503 Service Unavailable"))
            return False
        self._route.current = self.index
        return True

    def error(self) -> MasterUnreachable:
        """What to raise when no master could be reached."""
        if not self._failures:
            return MasterUnreachable(self._route.masters[self.index].url, "not tried")
        if len({url for url, _ in self._failures}) == 1:
            url, reason = self._failures[-1]
            return MasterUnreachable(url, reason)
        urls = ", ".join(dict.fromkeys(url for url, _ in self._failures))
        return MasterUnreachable(urls, "; ".join(f"{url}: {why}" for url, why in self._failures))
