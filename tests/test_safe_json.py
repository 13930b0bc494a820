"""`safe_json.loads(...).clean`: the fast path is taken only when nothing needs care."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ingest import safe_json

# Characters around the edges that matter: surrogate halves, U+0000, backslashes, emoji.
PIECES = st.sampled_from(["\ud83d", "\udc99", "\ud83d\udc99", "💙", "\\", "\x00", "u", "d83d", "a"])
TRICKY = st.lists(PIECES, max_size=8).map("".join)


def storable(value: object) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\\u0000" not in json.dumps(value)


@given(st.lists(TRICKY, max_size=4))
def test_a_body_is_clean_exactly_when_every_string_is_storable(texts: list[str]) -> None:
    body = json.dumps({"entry": texts}).encode()  # Meta escapes everything beyond ASCII
    assert safe_json.loads(body).clean == storable(json.loads(body))


def test_an_emoji_escaped_as_a_surrogate_pair_is_clean() -> None:
    assert safe_json.loads(b'{"text": "hi \\ud83d\\udc99"}').clean


def test_a_lone_half_after_an_escaped_backslash_is_not_clean() -> None:
    # a backslash, the text "ud83d", then a lone low surrogate
    loaded = safe_json.loads(b'{"text": "\\\\ud83d\\udc99"}')
    assert loaded.value["text"] == "\\ud83d\udc99"
    assert not loaded.clean


def test_a_lone_high_half_is_not_clean() -> None:
    assert not safe_json.loads(b'{"text": "\\ud83d!"}').clean
