"""A sans-I/O parser of Server-Sent Events (the `text/event-stream` format of the HTML standard).

Feed it the bytes of a response as they arrive; it returns the events they complete. It does no
I/O and keeps no clock, so the client's sync and async twins share it, and tests feed it bytes.
It follows the standard's parsing rules (UTF-8, CR / LF / CRLF line ends even when split across
chunks, one leading BOM dropped, `:` comments, `field: value` with one optional space, `data`
lines joined with LF, an event without data not dispatched, `id` containing NUL ignored,
`retry` only when all digits), with one difference in what it reports: `ServerSentEvent.id` is
the `id` field of *that* event (None when it had none), while the standard's "last event ID",
which persists from one event to the next, is `SSEParser.last_event_id` — herder marks only its
durable events with an id, and a caller wants to know which events those are.

Imports only the stdlib. Only the client reads event streams, so it lives in the client.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEParser", "ServerSentEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Bytes in, events out. `last_event_id` is what to send as `Last-Event-ID` on a reconnect;
    `retry` the reconnection delay (ms) the server asked for, if it did."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None
        self.last_event_id = ""
        self.retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events that `chunk` completes (an incomplete one waits for more bytes)."""
        return self._feed_text(self._decoder.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """The stream ended: finish a line held back for a possible LF after CR. An event that
        was not ended by a blank line is discarded, as the standard says."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        if self._buffer.endswith("\r"):
            self._buffer = self._buffer[:-1]
            event = self._line(self._buffer)
            self._buffer = ""
            if event is not None:
                events.append(event)
        self._buffer = ""
        self._reset()
        return events

    def _feed_text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        buffer = self._buffer + text
        events: list[ServerSentEvent] = []
        if "\r" not in buffer:  # LF line ends only (herder's server): a split, no regex matches
            *lines, self._buffer = buffer.split("\n")
            line_event = self._line
            for line in lines:
                if (event := line_event(line)) is not None:
                    events.append(event)
            return events
        start = 0
        for match in _LINE_END.finditer(buffer):
            # A CR at the very end may be the first half of CRLF: wait for the next chunk.
            if match.group() == "\r" and match.end() == len(buffer):
                break
            event = self._line(buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, such as a keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._reset()
            return None
        event = ServerSentEvent(
            event=self._event or "message", data="\n".join(self._data), id=self._id,
            retry=self._retry,
        )
        self._reset()
        return event

    def _reset(self) -> None:
        self._event = ""
        self._data = []
        self._id = None
        self._retry = None
