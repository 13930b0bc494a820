"""`safe_json.loads(...).clean`: the fast path is taken only when nothing needs care."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from ingest.edge import safe_json

# Characters around the edges that matter: surrogate halves, U+0000, backslashes, emoji.
PIECES = st.sampled_from(
    ["\ud83d", "\udc99", "\ud83d\udc99", "💙", "\\", "\x00", "u", "d83d", "0000", "a"]
)
TRICKY = st.lists(PIECES, max_size=8).map("".join)


def storable(values: list[object]) -> bool:
    """What `jsonb` holds as it is: bigint-sized integers, finite floats, UTF-8 text
    without U+0000."""
    for value in values:
        if isinstance(value, int) and abs(value) >= 10**18:
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, str) and ("\x00" in value or not is_utf8(value)):
            return False
    return True


def is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


NUMBERS = st.sampled_from(
    [0, -1, 10**17, 10**18 - 1, 10**18, -(10**19), 2**70, 1.5, math.nan, math.inf]
)


@given(st.lists(TRICKY | NUMBERS, max_size=4))
def test_a_body_is_clean_only_when_every_value_is_storable(values: list[object]) -> None:
    """Clean means no walk: a wrong "clean" would store what `jsonb` refuses. (A storable
    body may still be unclean, a backslash before "u0000": it only takes the slow path.)"""
    body = json.dumps(values).encode()  # Meta escapes everything beyond ASCII
    decoded = json.loads(body)
    if safe_json.loads(body).clean:
        assert storable(decoded)
    elif not any(isinstance(v, str) and "\\" in v for v in decoded):
        assert not storable(decoded)  # and the fast path is the rule, not the exception


def test_an_emoji_escaped_as_a_surrogate_pair_is_clean() -> None:
    assert safe_json.loads(b'{"text": "hi \\ud83d\\udc99"}').clean


def test_a_lone_half_after_an_escaped_backslash_is_not_clean() -> None:
    # a backslash, the text "ud83d", then a lone low surrogate
    loaded = safe_json.loads(b'{"text": "\\\\ud83d\\udc99"}')
    assert loaded.value["text"] == "\\ud83d\udc99"
    assert not loaded.clean


def test_a_lone_high_half_is_not_clean() -> None:
    assert not safe_json.loads(b'{"text": "\\ud83d!"}').clean


def test_a_surrogate_written_as_utf8_bytes_is_not_clean() -> None:
    loaded = safe_json.loads(b'{"text": "\xed\xa0\x80"}')
    assert loaded.value["text"] == "\ud800"  # `json` lets it through
    assert not loaded.clean


def test_a_body_in_another_encoding_than_utf8_is_walked() -> None:
    assert not safe_json.loads('{"text": "hi"}'.encode("utf-16")).clean


def test_hangul_shares_the_lead_byte_of_an_encoded_surrogate_and_is_clean() -> None:
    assert safe_json.loads('{"text": "한국어"}'.encode()).clean


def test_what_one_parse_marked_does_not_mark_the_next() -> None:
    assert not safe_json.loads(b'{"id": 12345678901234567890}').clean
    assert not safe_json.loads(b"[NaN]").clean
    assert safe_json.loads(b'{"id": 1}').clean
