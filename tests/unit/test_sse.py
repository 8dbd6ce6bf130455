"""The sans-I/O Server-Sent Events parser, fed bytes: the standard's parsing rules, and any
split of a stream into chunks giving the same events."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from herder.client.sse import ServerSentEvent, SSEParser


def parse(*chunks: bytes) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    return events + parser.close()


def test_fields_event_data_and_id() -> None:
    events = parse(b'event: log\nid: 7\ndata: {"a": 1}\n\n')
    assert events == [ServerSentEvent("log", '{"a": 1}', "7")]


def test_default_kind_is_message_and_data_lines_join_with_lf() -> None:
    assert parse(b"data: one\ndata: two\ndata\n\n") == [ServerSentEvent("message", "one\ntwo\n")]


def test_one_space_after_the_colon_is_dropped_and_only_one() -> None:
    expected = [ServerSentEvent(data="x"), ServerSentEvent(data=" y")]
    assert parse(b"data:x\n\ndata:  y\n\n") == expected


def test_comments_and_unknown_fields_are_ignored() -> None:
    events = parse(b": keep-alive\n\n:another\nfoo: bar\ndata: z\n\n")
    assert events == [ServerSentEvent(data="z")]


def test_an_event_without_data_is_not_dispatched_but_its_id_counts() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: state\nid: 3\n\n") == []
    assert parser.last_event_id == "3"
    # the next event's own id is its own: none here, though the last event id stays 3
    assert parser.feed(b"event: progress\ndata: {}\n\n") == [ServerSentEvent("progress", "{}")]
    assert parser.last_event_id == "3"


def test_id_with_nul_is_ignored() -> None:
    parser = SSEParser()
    assert parser.feed(b"id: 1\x002\ndata: x\n\n") == [ServerSentEvent(data="x")]
    assert parser.last_event_id == ""


def test_retry_only_when_all_digits() -> None:
    parser = SSEParser()
    parser.feed(b"retry: 1500\ndata: a\n\nretry: 2s\ndata: b\n\n")
    assert parser.retry == 1500


def test_crlf_and_cr_line_ends() -> None:
    expected = [ServerSentEvent("log", "x", "1"), ServerSentEvent("log", "y", "2")]
    raw = b"event: log\r\nid: 1\r\ndata: x\r\n\r\nevent: log\rid: 2\rdata: y\r\r"
    assert parse(raw) == expected


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # a CR at the end of a chunk must wait: the LF that follows is part of the same line end
    assert parse(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [
        ServerSentEvent(data="a"), ServerSentEvent(data="b")]


def test_a_final_cr_is_a_line_end_at_close() -> None:
    assert parse(b"data: a\r\r") == [ServerSentEvent(data="a")]


def test_an_unterminated_event_is_discarded_at_close() -> None:
    assert parse(b"data: a\n\ndata: half") == [ServerSentEvent(data="a")]


def test_leading_bom_is_dropped_once() -> None:
    bom = "\ufeff".encode()
    assert parse(bom + b"data: a\n\n") == [ServerSentEvent(data="a")]
    assert parse(bom, bom + b"data: a\n\n") == []  # the second BOM is part of a field name


def test_utf8_split_inside_a_character() -> None:
    raw = 'data: "héllo ✓"\n\n'.encode()
    cut = raw.index("✓".encode()) + 1
    assert parse(raw[:cut], raw[cut:]) == [ServerSentEvent(data='"héllo ✓"')]


STREAM = (
    b'event: snapshot\ndata: {"id": "t"}\n\n'
    b": keep-alive\r\n\r\n"
    b'event: state\r\nid: 1\r\ndata: {"state": "running"}\r\n\r\n'
    b'event: log\rid: 2\rdata: {"message": "\xc3\xa9t\xc3\xa9"}\r\r'
    b'event: progress\ndata: {"fraction": 0.5}\n\n'
)


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    events = parse(*chunks)
    assert [(e.event, e.id) for e in events] == [
        ("snapshot", None), ("state", "1"), ("log", "2"), ("progress", None)]
    assert events[2].data == '{"message": "été"}'


LF_STREAM = STREAM.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


@given(st.lists(st.integers(min_value=0, max_value=len(LF_STREAM)), max_size=12))
def test_any_chunking_of_lf_only_lines_gives_the_same_events(cuts: list[int]) -> None:
    # (the parser splits such chunks on LF without its regex: herder's server sends LF only)
    points = [0, *sorted(cuts), len(LF_STREAM)]
    chunks = [LF_STREAM[a:b] for a, b in itertools.pairwise(points)]
    assert parse(*chunks) == parse(STREAM)
