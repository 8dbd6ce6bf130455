"""The worker channel's decoder fuzzed: whatever bytes a connection sends (random, mutated
frames, wrong types, missing fields, huge lengths, deep nesting, invalid MessagePack), decoding
either gives valid frames within their bounds or raises the one ProtocolError, never anything
else."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herder.errors import ProtocolError
from herder.protocol import frames

#: anything MessagePack can carry, NaN, infinities and bytes included
packable = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(["t", "index", "attempt", "ts"]),
                      inner, max_size=4),
    max_leaves=16,
)

REF = {"task_id": "t1", "index": 0, "attempt": 1}
#: one valid map of each frame a worker sends
VALID: list[dict[str, Any]] = [
    {"t": "hello", "name": "w", "slots": 2, "types": ["noop"], "uid": "u1",
     "running": [REF], "results": [], "version": frames.PROTOCOL_VERSION},
    {"t": "heartbeat", "running": [REF], "unavailable": 0},
    {"t": "progress", **REF, "done": 0.5, "total": 1.0, "message": "half"},
    {"t": "log", **REF, "ts": 1.7e9, "level": "INFO", "message": "hello"},
    {"t": "result", **REF, "outcome": "ok", "result": {"a": [1, 2]}, "error": None,
     "traceback": None, "duration": 0.1},
    {"t": "drain"},
]
DECODERS: list[Callable[[bytes], Any]] = [
    frames.decode_worker_frames, frames.decode_worker_frame, frames.decode_hello,
]


def _decodes_or_refuses(data: bytes) -> None:
    """Each decoder either answers frames within their bounds or raises ProtocolError."""
    for decode in DECODERS:
        try:
            out = decode(data)
        except ProtocolError:
            continue
        for frame in out if isinstance(out, list) else [out]:
            _assert_within_bounds(frame)


def _assert_within_bounds(frame: pydantic.BaseModel) -> None:
    assert isinstance(frame, frames.WorkerFrame)
    for name, value in frame:
        if isinstance(value, float) and name != "result":
            assert math.isfinite(value), (name, value)
        if name in ("index", "attempt"):
            assert 0 <= value <= frames.MAX_INDEX
    for ref in [*getattr(frame, "running", []), *getattr(frame, "results", [])]:
        _assert_within_bounds_ref(ref)


def _assert_within_bounds_ref(ref: frames.AttemptRef) -> None:
    assert 0 <= ref.index <= frames.MAX_INDEX and 1 <= ref.attempt <= frames.MAX_INDEX


def test_the_valid_frames_decode() -> None:
    for valid in VALID:
        assert len(frames.decode_worker_frames(msgpack.packb(valid))) == 1
    assert len(frames.decode_worker_frames(msgpack.packb(VALID))) == len(VALID)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    _decodes_or_refuses(data)


@settings(max_examples=400)
@given(packable)
def test_random_messagepack_values(value: Any) -> None:
    _decodes_or_refuses(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=600)
@given(st.sampled_from(VALID), st.data())
def test_mutated_frames(valid: dict[str, Any], data: st.DataObject) -> None:
    frame = dict(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["drop", "replace", "add", "bound"]))
        key = data.draw(st.sampled_from(sorted(frame) or ["t"]))
        if action == "drop":
            frame.pop(key, None)
        elif action == "replace":
            frame[key] = data.draw(packable)
        elif action == "add":
            frame[data.draw(st.text(max_size=8))] = data.draw(packable)
        else:  # a number at or past a bound
            frame[key] = data.draw(st.sampled_from(
                [2**31, 2**31 - 1, 2**63 - 1, 2**64 - 1, -1, -(2**63), math.nan, math.inf,
                 -math.inf, 1e308]))
    many = data.draw(st.booleans())
    payload = msgpack.packb([frame, valid] if many else frame, use_bin_type=True)
    _decodes_or_refuses(payload)
    # cut anywhere: invalid MessagePack
    _decodes_or_refuses(payload[: data.draw(st.integers(0, max(0, len(payload) - 1)))])


@pytest.mark.parametrize("timestamp", [math.nan, math.inf, -math.inf])
def test_a_log_frame_without_a_finite_timestamp_is_the_protocol_error(timestamp: float) -> None:
    frame = {"t": "log", **REF, "ts": timestamp, "level": "INFO", "message": "x"}
    with pytest.raises(ProtocolError, match="ts"):
        frames.decode_worker_frames(msgpack.packb(frame))


@pytest.mark.parametrize(("field", "value"), [("index", 2**31), ("attempt", 2**31),
                                              ("index", 2**64 - 1), ("attempt", 0)])
def test_an_index_or_attempt_out_of_bounds_is_the_protocol_error(field: str, value: int) -> None:
    frame = {"t": "log", **REF, "ts": 1.0, "level": "INFO", "message": "x", field: value}
    with pytest.raises(ProtocolError, match=field):
        frames.decode_worker_frames(msgpack.packb(frame))


@pytest.mark.parametrize("data", [
    b"\x91" * 100_000 + b"\xc0",  # arrays nested 100,000 deep
    b"\x81\xa1t" * 50_000 + b"\xc0",  # maps nested 50,000 deep
    b"\xdd\xff\xff\xff\xff",  # an array that says it has 4 G items
    b"\xdf\xff\xff\xff\xff",  # a map that says it has 4 G pairs
    b"\xdb\xff\xff\xff\xff" + b"x" * 10,  # a string that says it has 4 GB
    b"\xc6\xff\xff\xff\xff",  # binary of 4 GB, announced
    b"\xc1",  # the one byte MessagePack never uses
    b"x" * (frames.MAX_FRAME_BYTES + 1),  # over the frame limit
])
def test_hostile_messagepack_is_the_protocol_error(data: bytes) -> None:
    for decode in DECODERS:
        with pytest.raises(ProtocolError):
            decode(data)


def test_a_result_nested_deep_in_a_valid_frame_decodes_or_is_refused() -> None:
    deep: Any = None
    for _ in range(500):
        deep = [deep]
    frame = {"t": "result", **REF, "outcome": "ok", "result": deep}
    _decodes_or_refuses(msgpack.packb(frame))
