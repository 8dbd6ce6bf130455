"""JSON text: compact encoders made once, and the type of a value encoded already.

`json.dumps` with any argument builds a new `JSONEncoder` per call, and `JSONEncoder.encode`
builds its C encoder per call too, several times the cost of encoding a small dict with an
encoder built once (the master encodes a part, a result and the params of every task).
The output and the errors are those of `json.dumps(value, separators=(",", ":"))`
(TypeError naming a type json cannot encode; with `strict`, ValueError for NaN and infinities),
except that a value that contains itself raises RecursionError: the check for cycles would cost
a dict per call.

`to_bytes` writes the master's answers and events as UTF-8 with orjson, several times quicker
than the encoders above on the task views that every submission and every finished task send
(docs/decisions.md). It writes NaN and infinities as null, keys that are not strings as strings,
and gives integers past 64 bits, which orjson refuses, to pydantic_core.

`loads` reads JSON with pydantic_core's parser, faster than `json.loads` on the small objects a
client reads once per task it waits for (docs/decisions.md). Imports the stdlib, orjson and
pydantic_core.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from pydantic_core import from_json, to_json

try:
    from _json import make_encoder as _c_make_encoder
except ImportError:  # an interpreter without the C accelerator: the pure-Python encoder
    _c_make_encoder = None  # type: ignore[assignment,misc]


class JSONText(str):
    """A JSON value already encoded as compact JSON text, by a caller that had to encode it
    anyway (to check that it is JSON): a store writes it as it is instead of encoding it again.
    A plain `str` is a JSON string value, as always."""

    __slots__ = ()


def _refuse(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(allow_nan: bool) -> Callable[[Any], str]:
    if _c_make_encoder is None:
        return json.JSONEncoder(separators=(",", ":"), allow_nan=allow_nan).encode
    # (markers: None skips the cycle check; indent None; sort_keys and skipkeys False)
    encode = _c_make_encoder(
        None, _refuse, json.encoder.encode_basestring_ascii, None, ":", ",", False, False,
        allow_nan,
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


#: compact JSON text of `value`; NaN and infinities as json.dumps writes them
compact = _encoder(allow_nan=True)
#: compact JSON text of `value`, which must be strict JSON: ValueError for NaN and infinities
strict = _encoder(allow_nan=False)


_TO_BYTES_OPTIONS = orjson.OPT_NON_STR_KEYS


def to_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON of `value`, for the wire."""
    try:
        return orjson.dumps(value, option=_TO_BYTES_OPTIONS)
    except TypeError:  # (orjson.JSONEncodeError is one)
        return to_json(value)


def loads(text: str | bytes) -> Any:
    """`json.loads(text)`, faster. What pydantic_core refuses goes to json.loads, for its value
    (a lone surrogate escape such as "\\ud800", which json.loads takes; bytes in UTF-16) or for
    its error (a JSONDecodeError, as before)."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)
