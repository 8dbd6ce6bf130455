"""Who may make a request: the role each path needs and whether a bearer token grants it.

The one place where access is decided, for every route and the worker channel alike: `Guard`
asks `role_needed(path)` and `Tokens.refusal(role, header)`. Three roles, each with its token:
client (the HTTP API), admin (the HTTP API and the admin routes) and worker (the worker channel
only). The admin token does not open the worker channel: a worker holds the one token that can
complete attempts. Imports `config` and `protocol.paths`.
"""

from __future__ import annotations

import enum
import re
import secrets
from dataclasses import dataclass

from herder.config import MasterSettings
from herder.protocol import paths

#: served outside the API, to anyone who can reach the server
DASHBOARD = "/"
STATIC = "/static"
DOCS = "/docs"
OPENAPI = "/openapi.json"

PUBLIC_PATHS = frozenset({paths.HEALTHZ, paths.READYZ, DASHBOARD, DOCS, OPENAPI})
#: what a standby master answers as the active one does: who it is, its metrics, its pages;
#: every other request gets 503 naming the active master (docs/failover.md)
STANDBY_PATHS = PUBLIC_PATHS | {paths.METRICS}
#: the routes only the admin role may use (path templates of `protocol.paths`)
ADMIN_TEMPLATES = (paths.WORKER_DRAIN,)


class Role(enum.Enum):
    """What a request acts as; each role may have a token of its own."""

    CLIENT = "client"  # the HTTP API and the metrics
    ADMIN = "admin"  # the HTTP API with its admin routes
    WORKER = "worker"  # the worker channel


#: the roles whose token grants each role: the admin's grants what the client's does
GRANTED_BY = {
    Role.CLIENT: (Role.CLIENT, Role.ADMIN),
    Role.ADMIN: (Role.ADMIN,),
    Role.WORKER: (Role.WORKER,),
}

#: the 401's detail for each role: what the caller must send
MISSING_TOKEN = {
    Role.CLIENT: "authorization: a valid 'Bearer' token is required",
    Role.ADMIN: "authorization: a valid admin token is required",
    Role.WORKER: "authorization: a valid worker token is required",
}

#: what the 403's detail says a token of each role may use
GRANTS = {
    Role.CLIENT: "the HTTP API without its admin routes",
    Role.ADMIN: "the HTTP API, not the worker channel",
    Role.WORKER: "only the worker channel and /healthz",
}


def _pattern(template: str) -> str:
    # a path parameter matches one segment, as Starlette's default convertor does
    return re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))


_ADMIN_PATH = re.compile("|".join(_pattern(t) for t in ADMIN_TEMPLATES))


#: the 403's detail for a WebSocket upgrade that carries an `Origin`: browsers send one with
#: every WebSocket (and apply no CORS to it), herder's worker never does, so no web page can
#: join as a worker, whatever credentials its browser holds
FROM_A_WEB_PAGE = (
    "origin: the worker channel does not take connections from web pages "
    "(the upgrade carries an Origin header; herder's worker sends none)"
)


def standby_serves(path: str) -> bool:
    """Whether a standby master answers a request to `path` itself."""
    return path in STANDBY_PATHS or path.startswith(STATIC + "/")


def role_needed(path: str) -> Role | None:
    """The role a request to `path` needs; None for a public path. Any path not known to be
    public needs a role, so that a route added later is guarded without a word here."""
    if path in PUBLIC_PATHS or path.startswith(STATIC + "/"):
        return None
    if path == paths.WORKER_CHANNEL:
        return Role.WORKER
    if _ADMIN_PATH.fullmatch(path):
        return Role.ADMIN
    return Role.CLIENT


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    detail: str


class Tokens:
    """The bearer token of each role; a role without one is open to every request."""

    def __init__(self, client: str | None, worker: str | None, admin: str | None) -> None:
        given = {Role.CLIENT: client, Role.WORKER: worker, Role.ADMIN: admin}
        self._by_role = {role: t.encode() for role, t in given.items() if t is not None}

    @classmethod
    def of(cls, settings: MasterSettings) -> Tokens:
        """The master's tokens: the worker and admin roles take the client token where they
        have none of their own, so that one --token closes every door."""
        client = settings.token
        return cls(client, settings.worker_token or client, settings.admin_token or client)

    @property
    def required(self) -> bool:
        return bool(self._by_role)

    def refusal(self, role: Role, authorization: bytes | None) -> Refusal | None:
        """None if an `Authorization` header's value grants `role`; else why not: 401 without
        a valid token, 403 with the token of a role that does not grant this one. Tokens are
        compared in constant time, each of them, whichever matches."""
        if role not in self._by_role:
            return None
        sent = b""
        if authorization is not None and authorization.startswith(b"Bearer "):
            sent = authorization[7:]
        holders = [r for r, token in self._by_role.items() if secrets.compare_digest(sent, token)]
        if not sent or not holders:
            return Refusal(401, MISSING_TOKEN[role])
        if any(r in GRANTED_BY[role] for r in holders):
            return None
        holder = holders[0]
        return Refusal(
            403,
            f"authorization: the {holder.value} token may use {GRANTS[holder]}; "
            f"this path needs the {role.value} role",
        )
