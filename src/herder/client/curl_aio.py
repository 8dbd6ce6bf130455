"""The asyncio half of the glue to libcurl (`curl` has the rest): `AsyncCurlLink` drives one
`CurlMulti` from the running event loop, libcurl's sockets watched with `add_reader`/
`add_writer`, its timer with `call_later`; completions read with `info_read`. A stream's chunks
come out of the write callback as they arrive. Imports pycurl and the client's `curl` and
`plan`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pycurl

from herder.client.curl import (
    KEEP,
    Easy,
    Outgoing,
    Target,
    Unreached,
    failure,
    head_is_final,
    silent,
    socket_closed,
    start_stream,
)
from herder.client.plan import Answer

__all__ = ["AsyncCurlLink"]


class _Transfer:
    """One transfer of `AsyncCurlLink`'s multi: `done` resolves (to None, or its Unreached)
    when libcurl has finished it. A stream's also says when its head is in (`head`) and wakes
    its reader at each chunk (`arrived`)."""

    __slots__ = ("arrived", "done", "easy", "head", "target")

    def __init__(
        self, easy: Easy, target: Target, loop: asyncio.AbstractEventLoop, stream: bool
    ) -> None:
        self.easy, self.target = easy, target
        self.done: asyncio.Future[Unreached | None] = loop.create_future()
        self.head: asyncio.Future[None] | None = loop.create_future() if stream else None
        self.arrived = asyncio.Event() if stream else None
        if stream:
            easy.curl.setopt(pycurl.HEADERFUNCTION, self._header)
            easy.curl.setopt(pycurl.WRITEFUNCTION, self._write)

    def _header(self, line: bytes) -> None:
        self.easy.head.append(line)
        if (line == b"\r\n" and self.head is not None and not self.head.done()
                and head_is_final(self.easy.head)):
            self.head.set_result(None)

    def _write(self, chunk: bytes) -> None:
        self.easy.body.append(chunk)
        if self.arrived is not None:
            self.arrived.set()

    def finish(self, error: Unreached | None) -> None:
        if not self.done.done():
            self.done.set_result(error)
        if self.head is not None and not self.head.done():
            self.head.set_result(None)
        if self.arrived is not None:
            self.arrived.set()

    async def chunks(self, timeout: float) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive; Unreached when the connection breaks or is silent
        for `timeout` seconds."""
        body, arrived = self.easy.body, self.arrived
        assert arrived is not None
        while True:
            if body:
                taken = body[:]
                body.clear()
                for chunk in taken:
                    yield chunk
                continue
            if self.done.done():
                break
            arrived.clear()
            try:
                async with asyncio.timeout(timeout):
                    await arrived.wait()
            except TimeoutError:
                raise silent() from None
        if (error := self.done.result()) is not None:
            raise error


class AsyncCurlLink:
    """Sends from asyncio: one `CurlMulti` (which keeps the connections) driven by the running
    event loop, bound to it at the first request (and to a new loop, should the client be used
    from another one later)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._multi: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._transfers: dict[Any, _Transfer] = {}
        self._watched: set[int] = set()
        self._idle: dict[Target, list[Easy]] = {}
        #: the sockets of each master's connections that the multi may have kept
        self._kept: dict[Target, set[int]] = {}

    def _bind(self) -> tuple[Any, asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._close_multi()
            self._loop, self._multi = loop, pycurl.CurlMulti()
            self._multi.setopt(pycurl.M_SOCKETFUNCTION, self._on_socket)
            self._multi.setopt(pycurl.M_TIMERFUNCTION, self._on_timer)
        return self._multi, loop

    def _on_socket(self, event: int, fd: int, multi: Any, data: Any) -> None:
        """libcurl's wish for socket `fd`: to hear when it can be read, written, or no more."""
        loop = self._loop
        assert loop is not None
        if fd in self._watched:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            self._watched.discard(fd)
        if event == pycurl.POLL_REMOVE:
            return
        if event & pycurl.POLL_IN:
            loop.add_reader(fd, self._act, fd, pycurl.CSELECT_IN)
        if event & pycurl.POLL_OUT:
            loop.add_writer(fd, self._act, fd, pycurl.CSELECT_OUT)
        self._watched.add(fd)

    def _on_timer(self, milliseconds: int) -> None:
        """libcurl's wish to be called again in `milliseconds` (-1: no more)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if milliseconds >= 0 and self._loop is not None:
            self._timer = self._loop.call_later(
                milliseconds / 1000, self._act, pycurl.SOCKET_TIMEOUT, 0)

    def _act(self, fd: int, events: int) -> None:
        multi = self._multi
        while multi.socket_action(fd, events)[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        while True:
            queued, done, failed = multi.info_read()
            for curl in done:
                self._finish(curl, None)
            for curl, code, message in failed:
                self._finish(curl, failure(code, message, curl))
            if not queued:
                break

    def _finish(self, curl: Any, error: Unreached | None) -> None:
        self._multi.remove_handle(curl)
        transfer = self._transfers.pop(curl, None)
        if transfer is not None:
            if error is None:
                self._kept.setdefault(transfer.target, set()).add(
                    curl.getinfo(pycurl.ACTIVESOCKET))
            transfer.finish(error)

    def _start(self, out: Outgoing, stream: bool) -> _Transfer:
        multi, loop = self._bind()
        idle = None if stream else self._idle.get(out.target)
        easy = idle.pop() if idle else Easy(out.target)
        if stream:
            start_stream(easy, out)
        else:
            easy.prepare(out, not out.resend and self._any_closed(out.target))
        transfer = self._transfers[easy.curl] = _Transfer(easy, out.target, loop, stream)
        multi.add_handle(easy.curl)
        return transfer

    def _any_closed(self, target: Target) -> bool:
        """True when a connection the multi may reuse for `target` was closed (see `_closed`):
        the multi cannot be told which to avoid, so the request takes a new one."""
        kept = self._kept.get(target)
        if not kept:
            return False
        closed = {fd for fd in kept if socket_closed(fd)}
        kept -= closed
        return bool(closed)

    def _drop(self, transfer: _Transfer) -> None:
        """Stop `transfer` if it still runs, and close its handle (its connection, if kept,
        stays with the multi)."""
        curl = transfer.easy.curl
        if self._transfers.pop(curl, None) is not None:
            self._multi.remove_handle(curl)
        curl.close()

    async def call(self, out: Outgoing) -> Answer:
        transfer = self._start(out, stream=False)
        try:
            error = await transfer.done
        except BaseException:
            self._drop(transfer)
            raise
        easy = transfer.easy
        if error is not None:
            easy.reset()
            self._give_back(out.target, easy)
            raise error
        answer = easy.answer()
        self._give_back(out.target, easy)
        return answer

    def _give_back(self, target: Target, easy: Easy) -> None:
        kept = self._idle.setdefault(target, [])
        if len(kept) < KEEP:
            kept.append(easy)
        else:
            easy.curl.close()

    @contextlib.asynccontextmanager
    async def stream(self, out: Outgoing) -> AsyncIterator[tuple[Answer, AsyncIterator[bytes]]]:
        transfer = self._start(out, stream=True)
        assert transfer.head is not None
        easy = transfer.easy
        try:
            try:
                async with asyncio.timeout(out.timeout):
                    await transfer.head
                    if easy.curl.getinfo(pycurl.RESPONSE_CODE) >= 400:
                        await transfer.done
            except TimeoutError:
                raise silent() from None
            if transfer.done.done() and (error := transfer.done.result()) is not None:
                raise error
            if easy.curl.getinfo(pycurl.RESPONSE_CODE) >= 400:
                yield easy.answer(), _no_chunks()
            else:
                yield easy.answer(b""), transfer.chunks(out.timeout)
        finally:
            self._drop(transfer)

    def _close_multi(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._loop is not None and not self._loop.is_closed():
            for fd in self._watched:
                self._loop.remove_reader(fd)
                self._loop.remove_writer(fd)
        self._watched.clear()
        self._kept.clear()
        for curl, transfer in list(self._transfers.items()):
            self._multi.remove_handle(curl)
            transfer.finish(Unreached("the client was closed", sent=True, broken=False))
        self._transfers.clear()
        for kept in self._idle.values():
            while kept:
                kept.pop().curl.close()
        if self._multi is not None:
            self._multi.close()
        self._loop = self._multi = None

    async def aclose(self) -> None:
        self._close_multi()


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield
