"""The frames packed from their fields (`frames._PLAIN_FIELDS`) and the maps the master builds
for its hot frames (`frames.*_map`) go on the wire exactly as pydantic's dump would put them, and
decode back to the same validated frame."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder.errors import ProtocolError
from herder.protocol import frames

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@given(
    part=json_values,
    index=st.integers(0, 10**6),
    attempt=st.integers(1, 100),
    timeout=st.none() | st.floats(0, 1e6),
)
def test_assign_packs_like_its_dump_and_decodes_back(
    part: Any, index: int, attempt: int, timeout: float | None
) -> None:
    fields = {"task_id": "t1", "index": index, "attempt": attempt, "type": "noop",
              "part": part, "timeout": timeout}
    validated = frames.Assign(**fields)
    data = frames.encode(validated)
    assert msgpack.unpackb(data) == msgpack.unpackb(
        msgpack.packb(validated.model_dump(mode="json"))
    )
    assert frames.decode_master_frames(data) == [validated]
    as_map = frames.assign_map("t1", index, attempt, "noop", part, timeout)
    assert msgpack.unpackb(frames.encode(as_map)) == msgpack.unpackb(data)
    assert frames.decode_master_frames(frames.encode(as_map)) == [validated]


def test_the_maps_of_acks_and_cancels_decode_as_their_frames() -> None:
    sent = _one_message(
        [frames.ack_map("t", 3, 2), frames.cancel_map("t", 4, 1, "deadline"),
         frames.Ack(task_id="t", index=5, attempt=1)]
    )
    assert frames.decode_master_frames(sent) == [
        frames.Ack(task_id="t", index=3, attempt=2),
        frames.Cancel(task_id="t", index=4, attempt=1, reason="deadline"),
        frames.Ack(task_id="t", index=5, attempt=1),
    ]


def test_acks_and_cancels_in_one_message_decode_in_order() -> None:
    ack = frames.Ack(task_id="t", index=3, attempt=2)
    cancel = frames.Cancel(task_id="t", index=4, attempt=1, reason="deadline")
    welcome = frames.Welcome(
        worker_id="w", heartbeat=1.0, keep=[frames.AttemptRef(task_id="t", index=0, attempt=1)]
    )
    decoded = frames.decode_master_frames(_one_message([ack, cancel, welcome]))
    assert decoded == [frames.Ack(task_id="t", index=3, attempt=2), cancel, welcome]


@given(result=json_values, duration=st.floats(0, 1e6))
def test_a_result_of_json_data_packs_like_its_dump(result: Any, duration: float) -> None:
    frame = frames.ResultFrame(task_id="t", index=0, attempt=1, outcome="ok", result=result,
                               duration=duration)
    assert msgpack.unpackb(frames.encode(frame)) == msgpack.unpackb(
        msgpack.packb(frame.model_dump(mode="json"))
    )


def _one_message(sent: list[frames.Encodable]) -> bytes:
    packed = frames.pack_messages(sent)
    assert not packed.refused
    (message,) = packed.messages
    return message


def test_messages_are_packed_under_the_byte_budget_in_order() -> None:
    sent = [frames.ack_map("t", i, 1) for i in range(200)]
    sent.insert(10, frames.assign_map("t", 99, 1, "noop", "x" * 3000, None))
    packed = frames.pack_messages(sent, budget=4096)
    assert not packed.refused
    assert len(packed.messages) > 1
    assert all(len(m) <= 4096 for m in packed.messages)
    decoded = [f for m in packed.messages for f in frames.decode_master_frames(m)]
    assert [(f.t, f.index) for f in decoded] == [(s["t"], s["index"]) for s in sent]


def test_a_frame_too_large_for_any_message_is_refused_and_the_rest_go() -> None:
    big = frames.assign_map("t", 0, 1, "noop", "x" * 5000, None)
    packed = frames.pack_messages([frames.ack_map("t", 1, 1), big, frames.ack_map("t", 2, 1)],
                                  budget=4096)
    assert [frame for frame, _ in packed.refused] == [big]
    assert "over the limit of" in packed.refused[0][1]
    decoded = [f for m in packed.messages for f in frames.decode_master_frames(m)]
    assert [f.index for f in decoded] == [1, 2]


def test_a_message_holds_at_most_the_frame_count() -> None:
    packed = frames.pack_messages([frames.ack_map("t", i, 1) for i in range(25)], most=10)
    assert [len(frames.decode_master_frames(m)) for m in packed.messages] == [10, 10, 5]


def test_a_hello_carries_no_token_and_an_earlier_workers_null_token_is_read() -> None:
    hello = frames.Hello(name="w", slots=1, types=["noop"])
    assert "token" not in msgpack.unpackb(frames.encode(hello))
    # what workers of this protocol version sent until the unused field went away
    earlier = {**hello.model_dump(mode="json"), "token": None}
    assert frames.decode_hello(msgpack.packb(earlier)) == hello
    with pytest.raises(ProtocolError, match="token"):
        frames.decode_hello(msgpack.packb({**earlier, "token": "a-token-in-the-hello"}))
