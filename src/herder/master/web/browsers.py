"""What keeps a web page from using the master through its visitor's browser.

Two checks, both asked by the `Guard` before any route runs:
- the `Host` header must name the master (`--allowed-hosts`): a page on a rebound DNS name
  reaches 127.0.0.1 from the browser but still says its own name in `Host`;
- a request that changes state (any method but GET, HEAD and OPTIONS) must be sent as
  `application/json`: a browser sends a form or a `text/plain` post to any origin without
  asking, but a JSON one only after a CORS preflight, which the master never grants.
And the headers of the master's pages (the dashboard, /docs): a strict Content-Security-Policy,
no framing, no content sniffing. Imports starlette only.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: `--allowed-hosts` entry that lets any `Host` through
ANY_HOST = "*"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_MEDIA_TYPE = b"application/json"


def default_allowed_hosts(bound: str) -> tuple[str, ...]:
    """The hosts a master bound to `bound` answers to when `--allowed-hosts` is not given."""
    return (bound, "localhost", "127.0.0.1", "::1")


class HostCheck:
    """The names (without port) a request's `Host` may carry."""

    def __init__(self, allowed: Iterable[str]) -> None:
        names = {_normal(name) for name in allowed if name.strip()}
        self.any = ANY_HOST in names
        self.names = frozenset(names)

    def refusal(self, host: bytes | None) -> str | None:
        """Why a request with this `Host` header is refused; None when it may go on."""
        if self.any:
            return None
        if host is None:
            return "host: the Host header is required"
        if host_name(host) in self.names:
            return None
        shown = host.decode("latin-1")[:100]
        allowed = ", ".join(sorted(self.names))
        return (f"host: {shown!r} is not a name of this master (--allowed-hosts: {allowed}; "
                f"'*' allows any)")


def host_name(host: bytes) -> str:
    """The name a `Host` header gives, without its port: `[::1]:8000` -> `::1`."""
    text = host.decode("latin-1").strip()
    if text.startswith("["):  # an IPv6 literal
        end = text.find("]")
        return _normal(text[1:end] if end > 0 else text)
    name, colon, port = text.rpartition(":")
    if colon and (port == "" or (port.isascii() and port.isdigit())):
        text = name
    return _normal(text)


def _normal(name: str) -> str:
    return name.strip().lower().rstrip(".")


def content_type_refusal(method: str, content_type: bytes | None) -> str | None:
    """Why a request of `method` with this `Content-Type` is refused; None when it may go on."""
    if method in SAFE_METHODS:
        return None
    media = (content_type or b"").split(b";", 1)[0].strip().lower()
    if media == JSON_MEDIA_TYPE:
        return None
    shown = repr(content_type.decode("latin-1")[:100]) if content_type else "none"
    return (f"content-type: a {method} request must be sent as application/json "
            f"(Content-Type: {shown})")


#: what a page of the master (the dashboard, /docs) may load and do: its own files only, no
#: inline script or style, no frame around it
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: the headers of every page and file of the dashboard and /docs
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_PAGE_HEADER_LINES = [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]


class PageHeaders:
    """An ASGI app that answers as `app` does, with PAGE_HEADERS added."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message,
                           "headers": [*message.get("headers", ()), *_PAGE_HEADER_LINES]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
