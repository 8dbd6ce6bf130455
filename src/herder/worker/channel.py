"""The worker's channel to the master: one WebSocket at a time, connected and reconnected
(jittered exponential backoff) forever, each connection opened with the hello/welcome handshake
and then read, written and kept alive with heartbeats. A wss:// master's certificate is verified
against the CA file of the settings, else the system's CA store.

Given several masters (`--master http://a:8700,http://b:8700`), the worker sticks to the one that
welcomed it; when that connection ends, or a master cannot be reached or answers 503 (a standby,
which names the active master: tried next), it moves on to the next in the list at once, and
backs off only once it has tried them all. A master that stops answering (paused, cut off) is
noticed by WebSocket pings within PING_EVERY + PING_TIMEOUT. The attempts the worker runs are
kept across the switch and named in its hello, so the active master lets it finish them.

What the frames mean is the attempts' book's business (`worker.attempts`): the channel hands it
every frame it reads and gives it the outbox of each connection. Imports `config`, `errors`,
`protocol.{frames,paths,redact}`, `worker.{attempts,execute,outbox}` and websockets.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import urllib.parse
import uuid
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.frames import CloseCode

from herder.config import WorkerSettings
from herder.errors import ProtocolError
from herder.protocol.frames import (
    MAX_FRAME_BYTES,
    MAX_FRAMES_PER_MESSAGE,
    Drain,
    Hello,
    Welcome,
    decode_master_frames,
    encode,
    pack_messages,
)
from herder.protocol.paths import WORKER_CHANNEL
from herder.protocol.redact import hide_authorization
from herder.worker.attempts import AttemptBook, ref_of
from herder.worker.execute import truncate
from herder.worker.outbox import Outbox

log = logging.getLogger(__name__)

#: seconds the master has to answer a hello with a welcome
WELCOME_TIMEOUT = 10.0
#: before its first connection, a worker retries this often, this many times (then backs off)
STARTUP_RETRY = 0.01
STARTUP_RETRIES = 500
#: seconds between pings of the master, and how long its pong may take before the connection
#: is given up as dead (a paused master, a cut network)
PING_EVERY = 2.0
PING_TIMEOUT = 5.0
#: seconds between rounds of the masters while one of them answers as a standby: a take-over is
#: under way, which a growing backoff would only wait out longer
STANDBY_RETRY = 0.25


def channel_urls(masters: str) -> list[str]:
    """The worker channel's URLs for a master's URL or a comma list of several."""
    found = [channel_url(m.strip()) for m in masters.split(",") if m.strip()]
    if not found:
        raise ValueError(f"master: no URL given in {masters!r}")
    return list(dict.fromkeys(found))


def channel_url(master: str) -> str:
    """The worker channel's ws(s):// URL for the master's http(s):// URL."""
    parts = urllib.parse.urlsplit(master)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"master: expected an http:// or https:// URL, got {master!r}")
    path = parts.path.rstrip("/") + WORKER_CHANNEL
    return urllib.parse.urlunsplit((schemes[parts.scheme], parts.netloc, path, "", ""))


def tls_context(url: str, ca: str | None) -> ssl.SSLContext | None:
    """What verifies the master's certificate for a wss:// `url` (None for ws://): the CA file
    `ca`, else the system's CA store. A CA file that cannot be read is a ValueError naming it,
    with ws:// too: it was given for a reason."""
    try:
        context = ssl.create_default_context(cafile=ca)
    except ssl.SSLError:
        raise ValueError(f"--ca: no PEM certificate in {ca!r}") from None
    except OSError as exc:
        raise ValueError(f"--ca: cannot read {ca!r}: {exc.strerror}") from None
    return context if url.startswith("wss://") else None


class Backoff:
    """Jittered exponential delays between `first` and `cap`."""

    def __init__(self, first: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.first = max(0.0, first)
        self.cap = max(self.first, cap)
        self._rng = rng
        self._tries = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2.0**self._tries)
        self._tries = min(self._tries + 1, 64)
        # Jitter within the upper half, so that workers cut off together do not return together.
        return max(self.first, ceiling * (0.5 + 0.5 * self._rng()))

    def reset(self) -> None:
        self._tries = 0


class Channel:
    """The connection to the master, for as long as the worker runs."""

    def __init__(self, settings: WorkerSettings, types: list[str], book: AttemptBook) -> None:
        self._settings = settings
        self._name = settings.name
        self._types = types
        self._book = book
        self.urls = channel_urls(settings.master)
        #: the master tried now, or welcomed last (an index into `urls`)
        self._current = 0
        self._tls = {url: tls_context(url, settings.ca) for url in self.urls}
        #: this process's identity across reconnects (the name may be shared by mistake)
        self.uid = uuid.uuid4().hex
        #: set by the master's welcome; None before the first one
        self.worker_id: str | None = None
        #: connections that got as far as a welcome, and attempts that did not (for tests, logs)
        self.sessions = 0
        self.failed_connects = 0
        self.hello()  # a bad name or slot count is refused here, not on every reconnect

    @property
    def url(self) -> str:
        """The channel URL of the master tried now, or connected to."""
        return self.urls[self._current]

    @property
    def connected(self) -> bool:
        return self._book.outbox is not None

    def hello(self) -> Hello:
        settings = self._settings
        return Hello(
            name=self._name,
            slots=settings.slots,
            types=self._types,
            labels=list(settings.labels),
            pool="process" if settings.pool == "process" else "thread",
            uid=self.uid,
            running=[ref_of(k) for k in self._book.held()],
            results=[ref_of(k) for k in self._book.unacked()],
        )

    async def run(self) -> None:
        """Connect, and connect again whenever the connection ends, until cancelled."""
        backoff = Backoff(self._settings.reconnect_min, self._settings.reconnect_max)
        token = self._settings.token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        logger = logging.getLogger("websockets.client")
        hide_authorization(logger)  # websockets logs the handshake's headers at debug level
        #: masters tried in a row without a welcome, and whether one of them is a standby
        unwelcomed = 0
        standby_seen = False
        while True:
            welcomed_before = self.sessions
            master_starting = True  # what a failed connect may mean, until shown otherwise
            next_master = (self._current + 1) % len(self.urls)
            try:
                async with connect(
                    self.url,
                    ssl=self._tls[self.url],
                    ping_interval=PING_EVERY,
                    ping_timeout=PING_TIMEOUT,
                    additional_headers=headers,
                    max_size=MAX_FRAME_BYTES,
                    # frames are small and mostly unique: compressing them costs more CPU
                    # than it saves on a LAN
                    compression=None,
                    open_timeout=WELCOME_TIMEOUT,
                    close_timeout=2.0,
                    logger=logger,
                ) as ws:
                    await self._session(ws)
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:  # refused before the upgrade: the body says why
                standby, named = self._refused(exc)
                standby_seen |= standby
                next_master = next_master if named is None else named
            except ssl.SSLCertVerificationError as exc:  # no retry fixes it: say so, and how
                master_starting = False
                log.error(
                    "worker %s: the master at %s has a certificate this worker does not trust "
                    "(%s): name the CA that signed it with --ca or HERDER_CA", self._name,
                    self.url, exc.verify_message,
                )
            except (OSError, TimeoutError, ConnectionClosed, InvalidMessage, ProtocolError) as exc:
                # Before the first connection, a refused one is the master still starting.
                level = logging.DEBUG if self.sessions == 0 else logging.WARNING
                reason = exc or repr(exc)
                log.log(level, "worker %s: channel to %s: %s", self._name, self.url, reason)
            except Exception:  # a bug here must cost a reconnect, not the worker
                log.exception("worker %s: channel to %s failed", self._name, self.url)
            finally:
                self._book.outbox = None
            if self.sessions > welcomed_before:
                backoff.reset()
                unwelcomed = 0
            else:
                self.failed_connects += 1
                unwelcomed += 1
            self._current = next_master
            if self.sessions > 0 and unwelcomed < len(self.urls):
                continue  # another master is left to try at once
            unwelcomed = 0
            await asyncio.sleep(self._pause(backoff, standby_seen, master_starting))
            standby_seen = False

    def _pause(self, backoff: Backoff, standby_seen: bool, master_starting: bool) -> float:
        """Seconds to wait after a round of the masters without a welcome."""
        if standby_seen:
            return STANDBY_RETRY
        if master_starting and self.sessions == 0 and self.failed_connects <= STARTUP_RETRIES:
            # A worker started with its master (`herder up`) finds it still starting: try
            # again soon, so that it is there within STARTUP_RETRY of the master.
            return STARTUP_RETRY
        return backoff.next()

    def _refused(self, exc: InvalidStatus) -> tuple[bool, int | None]:
        """Log a master's refusal of the channel. (whether it is a standby, the index of the
        active master it names, if one of ours)"""
        status, body = exc.response.status_code, exc.response.body
        if status != 503:
            log.error("worker %s: the master at %s refused the channel (%s): %s",
                      self._name, self.url, status, _refusal(body))
            return False, None
        active = _active_url(body)
        log.info("worker %s: %s is a standby master (active: %s)", self._name, self.url,
                 active or "none yet")
        return True, self.urls.index(active) if active in self.urls else None

    async def _session(self, ws: ClientConnection) -> None:
        book = self._book
        hello = self.hello()
        await ws.send(encode(hello))
        # The master may send its first assigns in the same message as the welcome.
        raw = await asyncio.wait_for(ws.recv(), WELCOME_TIMEOUT)
        if isinstance(raw, str):
            raise ProtocolError("frame: expected a binary frame, got text")
        welcome, *early = decode_master_frames(raw)
        if not isinstance(welcome, Welcome):
            raise ProtocolError(f"frame {welcome.t!r}: expected 'welcome' first")
        self.sessions += 1
        self.worker_id = welcome.worker_id
        book.keep_only(hello.running, welcome.keep)
        outbox = Outbox()
        if book.draining:
            outbox.put(Drain())
        for frame in book.unacked_results():
            outbox.put(frame)
        book.outbox = outbox
        log.info("worker %s: connected to %s as %s", self._name, self.url, welcome.worker_id)
        for early_frame in early:
            book.handle(early_frame)
        tasks = [
            asyncio.create_task(self._write(ws, outbox)),
            asyncio.create_task(self._beat(outbox, max(0.05, welcome.heartbeat))),
        ]
        if welcome.hand_back_after is not None:
            tasks.append(asyncio.create_task(self._watch_overruns(welcome.hand_back_after)))
        try:
            await self._read(ws)
        finally:
            book.outbox = None
            if outbox.dropped:
                log.warning(
                    "worker %s: %d progress/log frame(s) dropped: the master did not keep up",
                    self._name,
                    outbox.dropped,
                )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, ws: ClientConnection) -> None:
        handle = self._book.handle
        async for raw in ws:
            try:
                if isinstance(raw, str):
                    raise ProtocolError("frame: expected a binary frame, got text")
                batch = decode_master_frames(raw)
            except ProtocolError as exc:
                log.error("worker %s: bad frame from master, reconnecting: %s", self._name, exc)
                await ws.close(CloseCode.PROTOCOL_ERROR, truncate(str(exc), 120))
                return
            for frame in batch:
                handle(frame)

    async def _write(self, ws: ClientConnection, outbox: Outbox) -> None:
        try:
            while True:
                packed = pack_messages(await outbox.get_batch(MAX_FRAMES_PER_MESSAGE))
                for frame, why in packed.refused:  # results were checked: none is refused
                    kind = frame["t"] if isinstance(frame, dict) else frame.t
                    log.error("worker %s: a %s frame is not sent: %s", self._name, kind, why)
                for message in packed.messages:
                    await ws.send(message)
        except ConnectionClosed:
            pass  # the reader sees it too and ends the session

    async def _beat(self, outbox: Outbox, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            outbox.put(self._book.heartbeat())

    async def _watch_overruns(self, after: float) -> None:
        """See AttemptBook.hand_back_if_overrun; `after` is the welcome's hand_back_after."""
        while True:
            await asyncio.sleep(max(0.02, after / 4))
            self._book.hand_back_if_overrun(after)


def _active_url(body: bytes | bytearray | None) -> str | None:
    """The channel URL of the active master a standby's 503 names, if any."""
    try:
        active = json.loads(bytes(body or b"")).get("active_url")
        return channel_url(active) if isinstance(active, str) else None
    except (ValueError, AttributeError):
        return None


def _refusal(body: bytes | bytearray | None) -> str:
    """The `detail` of the master's error answer, else the body as text."""
    text = bytes(body or b"").decode(errors="replace")
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else text[:200] or "no reason given"
