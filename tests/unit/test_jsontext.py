"""herder.jsontext: the encoders built once write what json.dumps writes, and refuse the same."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herder import jsontext

_scalars = (
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@given(_json)
def test_writes_what_json_dumps_writes(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"))
    assert jsontext.compact(value) == expected
    assert jsontext.strict(value) == expected
    assert json.loads(jsontext.strict(value)) == value


@given(_json, st.booleans())
def test_loads_reads_what_json_loads_reads(value: Any, ascii_only: bool) -> None:
    # st.text() makes lone surrogates too: escaped ("\\ud800"), pydantic_core refuses them
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert jsontext.loads(text) == json.loads(text) == value
    if ascii_only:
        assert jsontext.loads(text.encode()) == value


def test_loads_takes_what_json_loads_takes_and_refuses_the_rest_the_same_way() -> None:
    assert jsontext.loads('"\\ud800"') == "\ud800"
    assert math.isnan(jsontext.loads("NaN")) and jsontext.loads("[-Infinity]") == [-math.inf]
    assert jsontext.loads("123456789012345678901234567890") == 123456789012345678901234567890
    with pytest.raises(json.JSONDecodeError, match="Expecting property name"):
        jsontext.loads("{oops")


def test_tuples_are_lists_and_keys_are_strings_as_in_json() -> None:
    assert jsontext.strict({"a": (1, 2), 3: None, True: 1.5}) == '{"a":[1,2],"3":null,"true":1.5}'


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"a": [math.nan]}])
def test_strict_refuses_what_is_not_json_and_compact_writes_it(value: Any) -> None:
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        jsontext.strict(value)
    assert jsontext.compact(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    ("value", "type_name"), [(b"x", "bytes"), ({1, 2}, "set"), ([object()], "object")]
)
def test_a_type_json_cannot_encode_is_named(value: Any, type_name: str) -> None:
    for encode in (jsontext.compact, jsontext.strict):
        with pytest.raises(TypeError, match=f"Object of type {type_name} is not JSON serializable"):
            encode(value)


def test_a_value_that_contains_itself_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(RecursionError):
        jsontext.strict(loop)
    assert jsontext.strict([1]) == "[1]"  # and the encoder still works afterwards


@given(_json)
def test_to_bytes_reads_back_as_the_value(value: Any) -> None:
    try:
        text = jsontext.to_bytes(value)
    except ValueError:  # a lone surrogate (st.text() makes them), which UTF-8 cannot hold
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(value, ensure_ascii=False))
        return
    assert json.loads(text) == value


def test_to_bytes_writes_compact_utf8_and_what_json_cannot_refuse_as_the_wire_takes_it() -> None:
    assert jsontext.to_bytes({"a": [1, 2.5, None, True], "é": "✓"}) == (
        '{"a":[1,2.5,null,true],"é":"✓"}'.encode()
    )
    assert jsontext.to_bytes({1: "one"}) == b'{"1":"one"}'  # as json.dumps keys them
    assert jsontext.to_bytes([math.nan, math.inf]) == b"[null,null]"
    assert jsontext.to_bytes(2**70) == str(2**70).encode()  # past orjson's 64 bits
