"""The worker channel: binary MessagePack frames, each decoded into a typed, validated object.

Sans I/O: `encode(frame) -> bytes`, `decode(bytes) -> Frame`. Every frame is a map with a `t` key
naming its kind. An unknown or malformed frame raises ProtocolError; the session that received it
closes that one connection with the error as the reason. Imports pydantic, msgpack and `errors`.

One WebSocket message carries one frame (a map) or several (an array of maps, in order): a
sender that has many frames ready sends them together, which saves a system call and a WebSocket
header per frame. `pack_messages` packs them under a byte budget as well as a frame count, so that
no message passes MAX_FRAME_BYTES, which both ends refuse; a frame too large for any message is
handed back to its sender, which fails its attempt (docs/limits.md).

Both directions are typed: incoming frames are validated pydantic models; outgoing ones are
those models or, for the frames sent once per subtask, TypedDict maps made by `*_map`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

import msgpack
import pydantic

from herder.errors import ProtocolError

PROTOCOL_VERSION = 1
#: the largest WebSocket message either end accepts
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_LOG_MESSAGE = 16 * 1024
MAX_FRAMES_PER_MESSAGE = 10_000
#: room in a frame for everything but its part or result (ids, type, error, traceback)
FRAME_OVERHEAD = 128 * 1024
#: the largest part or result, packed: its frame fits in a message
MAX_VALUE_BYTES = MAX_FRAME_BYTES - FRAME_OVERHEAD
#: the largest subtask index and attempt number a frame may name (a signed 32-bit int)
MAX_INDEX = 2**31 - 1

#: `too_large`: the part or result cannot fit in a message; its subtask fails without retries
Outcome = Literal["ok", "error", "cancelled", "released", "timeout", "too_large"]


class _Frame(pydantic.BaseModel):
    # no NaN or infinity in any float field: a timestamp or a duration is stored and answered
    # as JSON, which has neither
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class AttemptRef(_Frame):
    """Names one attempt of one subtask; `attempt` is the fencing token."""

    task_id: str
    index: int = pydantic.Field(ge=0, le=MAX_INDEX)
    attempt: int = pydantic.Field(ge=1, le=MAX_INDEX)


# -- worker -> master ------------------------------------------------------------------------


class Hello(_Frame):
    t: Literal["hello"] = "hello"
    version: int = PROTOCOL_VERSION
    name: str = pydantic.Field(min_length=1, max_length=200)
    slots: int = pydantic.Field(ge=1, le=10_000)
    types: list[str]
    labels: list[str] = []
    pool: Literal["thread", "process"] = "thread"
    #: stays the same across the reconnects of one worker process, so that the master gives
    #: a worker that comes back within its lease its attempts back
    uid: str | None = pydantic.Field(default=None, max_length=64)
    #: attempts this worker is still running (after a reconnect)
    running: list[AttemptRef] = []
    #: attempts whose results it holds, not yet acknowledged (it sends them after the welcome)
    results: list[AttemptRef] = []

    @pydantic.model_validator(mode="before")
    @classmethod
    def _without_unused_token(cls, data: Any) -> Any:
        """Earlier workers of this protocol version send `"token": null` (a field nothing set
        or read; the token goes in the handshake's header): read their hello as one without
        it. A token of any other value stays an unknown field."""
        if isinstance(data, dict) and "token" in data and data["token"] is None:
            return {k: v for k, v in data.items() if k != "token"}
        return data


class Heartbeat(_Frame):
    t: Literal["heartbeat"] = "heartbeat"
    running: list[AttemptRef] = []
    #: slots taken by abandoned attempts (threads that ignored their cancel and still run)
    unavailable: int = pydantic.Field(default=0, ge=0)


class ProgressFrame(AttemptRef):
    t: Literal["progress"] = "progress"
    done: float
    total: float | None = None
    message: str | None = pydantic.Field(default=None, max_length=MAX_LOG_MESSAGE)


class LogFrame(AttemptRef):
    t: Literal["log"] = "log"
    ts: float
    level: str = pydantic.Field(max_length=20)
    message: str


class ResultFrame(AttemptRef):
    t: Literal["result"] = "result"
    outcome: Outcome
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    duration: float = 0.0


class Drain(_Frame):
    """From a worker: it stops taking work (it was asked to stop). From the master: asks the
    worker to do so, as on SIGTERM (an admin drained it)."""

    t: Literal["drain"] = "drain"


# -- master -> worker ------------------------------------------------------------------------


class Welcome(_Frame):
    t: Literal["welcome"] = "welcome"
    worker_id: str
    heartbeat: float
    #: attempts from the hello's `running` that the master still wants; the rest must stop
    keep: list[AttemptRef] = []
    #: seconds: once every slot has run its attempt this long, hand back (outcome `released`)
    #: the attempts waiting for a slot; None: never
    hand_back_after: float | None = None


class Assign(AttemptRef):
    t: Literal["assign"] = "assign"
    type: str
    part: Any = None
    #: seconds this attempt may run (task deadline and subtask timeout); None: no limit
    timeout: float | None = None


class Cancel(AttemptRef):
    t: Literal["cancel"] = "cancel"
    reason: str = "cancelled"


class Ack(AttemptRef):
    """The master committed this attempt's result; the worker may forget it."""

    t: Literal["ack"] = "ack"


WorkerFrame = Hello | Heartbeat | ProgressFrame | LogFrame | ResultFrame | Drain
MasterFrame = Welcome | Assign | Cancel | Ack | Drain
Frame = WorkerFrame | MasterFrame
class AssignMap(TypedDict):
    """An `Assign` as the map it is sent as (`assign_map`)."""

    t: Literal["assign"]
    task_id: str
    index: int
    attempt: int
    type: str
    part: Any
    timeout: float | None


class AckMap(TypedDict):
    """An `Ack` as the map it is sent as (`ack_map`)."""

    t: Literal["ack"]
    task_id: str
    index: int
    attempt: int


class CancelMap(TypedDict):
    """A `Cancel` as the map it is sent as (`cancel_map`)."""

    t: Literal["cancel"]
    task_id: str
    index: int
    attempt: int
    reason: str


class ResultMap(TypedDict):
    """A `ResultFrame` as the map it is sent as (`result_map`)."""

    t: Literal["result"]
    task_id: str
    index: int
    attempt: int
    outcome: Outcome
    result: Any
    error: str | None
    traceback: str | None
    duration: float


#: What the master sends: a frame, or the map of an assign, cancel or ack (what a worker
#: decodes from either is the same validated frame)
Outgoing = MasterFrame | AssignMap | AckMap | CancelMap
#: What a worker sends: a frame, or a result's map
WorkerOutgoing = WorkerFrame | ResultMap
#: Anything `encode` packs
Encodable = Frame | AssignMap | AckMap | CancelMap | ResultMap


# The frames sent once per subtask (assign, ack, result) are built as typed maps of the fields
# they are sent as, not as models: a model validates its fields when it is made, and the
# sender's values are its own (a part passed a JSON check after the split, a result
# `check_result`), while the other end validates every frame it decodes.


def assign_map(
    task_id: str, index: int, attempt: int, type: str, part: Any, timeout: float | None
) -> AssignMap:
    return {"t": "assign", "task_id": task_id, "index": index, "attempt": attempt,
            "type": type, "part": part, "timeout": timeout}


def ack_map(task_id: str, index: int, attempt: int) -> AckMap:
    return {"t": "ack", "task_id": task_id, "index": index, "attempt": attempt}


def result_map(
    task_id: str,
    index: int,
    attempt: int,
    outcome: Outcome,
    result: Any,
    error: str | None,
    traceback: str | None,
    duration: float,
) -> ResultMap:
    """A worker's own values: its result passed `execute.check_result`."""
    return {"t": "result", "task_id": task_id, "index": index, "attempt": attempt,
            "outcome": outcome, "result": result, "error": error, "traceback": traceback,
            "duration": duration}


def cancel_map(task_id: str, index: int, attempt: int, reason: str) -> CancelMap:
    return {"t": "cancel", "task_id": task_id, "index": index, "attempt": attempt,
            "reason": reason}


_worker_adapter: pydantic.TypeAdapter[WorkerFrame] = pydantic.TypeAdapter(
    Annotated[WorkerFrame, pydantic.Field(discriminator="t")]
)
_master_adapter: pydantic.TypeAdapter[MasterFrame] = pydantic.TypeAdapter(
    Annotated[MasterFrame, pydantic.Field(discriminator="t")]
)


#: Frames of plain fields (no nested models) sent by the thousand, whose values are JSON data
#: already (a part passed a JSON check after the split; a result went through
#: `to_jsonable_python` on the worker): packed from their validated fields as they are, without
#: pydantic's dump, which costs more than the packing.
_PLAIN_FIELDS = frozenset({Assign, Ack, Cancel, ResultFrame, ProgressFrame, LogFrame})


def _fields(frame: Encodable) -> Any:
    if isinstance(frame, dict):  # made by one of the *_map builders
        return frame
    if type(frame) in _PLAIN_FIELDS:
        return frame.__dict__
    return frame.model_dump(mode="json")


def encode(frame: Encodable) -> bytes:
    packed: bytes = msgpack.packb(_fields(frame), use_bin_type=True)
    return packed


@dataclass(slots=True)
class Packed:
    """`pack_messages`'s answer: the messages to send in order, and the frames left out."""

    messages: list[bytes] = field(default_factory=list)
    #: (frame, why): a frame too large for any message, or one that cannot be packed
    refused: list[tuple[Encodable, str]] = field(default_factory=list)


#: an array header takes at most this many bytes
_ARRAY_HEADER = 5


def pack_messages(
    frames: Sequence[Encodable], budget: int = MAX_FRAME_BYTES, most: int = MAX_FRAMES_PER_MESSAGE
) -> Packed:
    """The frames packed into as few messages as fit, each at most `budget` bytes and `most`
    frames (one frame alone is sent as itself, several as an array of maps, in order).

    The usual batch fits one message: it is packed in one call. Otherwise each frame is packed
    once, on its own: its size is the length of its bytes, and an array is its header followed
    by its items' bytes, as MessagePack lays it out."""
    packer = msgpack.Packer(use_bin_type=True)
    if 0 < len(frames) <= most:
        try:
            fields = [_fields(frame) for frame in frames]
            whole: bytes = packer.pack(fields[0] if len(fields) == 1 else fields)
        except (TypeError, ValueError, OverflowError):
            pass  # the frame at fault is found below
        else:
            if len(whole) <= budget - _ARRAY_HEADER:
                return Packed([whole])
    pack = packer.pack
    out = Packed()
    group: list[bytes] = []
    size = _ARRAY_HEADER
    room = budget - _ARRAY_HEADER
    for frame in frames:
        try:
            data = pack(_fields(frame))
        except (TypeError, ValueError, OverflowError) as exc:
            out.refused.append((frame, f"it cannot be packed ({exc})"))
            continue
        if len(data) > room:
            out.refused.append(
                (frame, f"its frame is {len(data)} bytes, over the limit of {room} bytes")
            )
            continue
        if group and (size + len(data) > budget or len(group) >= most):
            out.messages.append(_joined(packer, group))
            group, size = [], _ARRAY_HEADER
        group.append(data)
        size += len(data)
    if group:
        out.messages.append(_joined(packer, group))
    return out


def _joined(packer: msgpack.Packer, group: list[bytes]) -> bytes:
    if len(group) == 1:
        return group[0]
    header: bytes = packer.pack_array_header(len(group))
    return header + b"".join(group)


def _load(data: bytes) -> Any:
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError("frame: expected a binary frame, got text")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame: {len(data)} bytes is over the limit of {MAX_FRAME_BYTES}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ProtocolError(f"frame: not valid MessagePack ({exc})") from None


def _check_map(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise ProtocolError("frame: must be a map with a string 't' naming its kind")
    return obj


def _unpack(data: bytes) -> Any:
    return _check_map(_load(data))


def _unpack_many(data: bytes) -> list[dict[str, Any]]:
    obj = _load(data)
    if isinstance(obj, list):
        if not obj or len(obj) > MAX_FRAMES_PER_MESSAGE:
            raise ProtocolError(
                f"frame: a message holds 1 to {MAX_FRAMES_PER_MESSAGE} frames, not {len(obj)}"
            )
        return [_check_map(item) for item in obj]
    return [_check_map(obj)]


def _validate(adapter: pydantic.TypeAdapter[Any], obj: Any) -> Any:
    try:
        return adapter.validate_python(obj)
    except pydantic.ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"{loc}: {err['msg']}")
        raise ProtocolError(f"frame {obj.get('t')!r}: " + "; ".join(parts)) from None


def decode_worker_frames(data: bytes) -> list[WorkerFrame]:
    """Decode a message from a worker: one frame or several."""
    return [_validate(_worker_adapter, obj) for obj in _unpack_many(data)]


def decode_master_frames(data: bytes) -> list[MasterFrame]:
    """Decode a message from the master: one frame or several."""
    return [_validate(_master_adapter, obj) for obj in _unpack_many(data)]


def decode_worker_frame(data: bytes) -> WorkerFrame:
    """Decode what a worker sent (used by the master)."""
    return _validate(_worker_adapter, _unpack(data))  # type: ignore[no-any-return]


def decode_master_frame(data: bytes) -> MasterFrame:
    """Decode what the master sent (used by a worker)."""
    return _validate(_master_adapter, _unpack(data))  # type: ignore[no-any-return]


def decode_hello(data: bytes) -> Hello:
    """Decode a connection's first frame, which must be a hello."""
    obj = _unpack(data)
    if obj["t"] != "hello":
        raise ProtocolError(f"frame {obj['t']!r}: the first frame must be 'hello'")
    hello: Hello = _validate(_worker_adapter, obj)
    return hello
