"""The frames packed from their fields (`frames._PLAIN_FIELDS`) and the maps the master builds
for its hot frames (`frames.*_map`) go on the wire exactly as pydantic's dump would put them, and
decode back to the same validated frame."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

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
    sent = frames.encode_many(
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
    decoded = frames.decode_master_frames(frames.encode_many([ack, cancel, welcome]))
    assert decoded == [frames.Ack(task_id="t", index=3, attempt=2), cancel, welcome]


@given(result=json_values, duration=st.floats(0, 1e6))
def test_a_result_of_json_data_packs_like_its_dump(result: Any, duration: float) -> None:
    frame = frames.ResultFrame(task_id="t", index=0, attempt=1, outcome="ok", result=result,
                               duration=duration)
    assert msgpack.unpackb(frames.encode(frame)) == msgpack.unpackb(
        msgpack.packb(frame.model_dump(mode="json"))
    )
