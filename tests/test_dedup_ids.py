"""Deduplication IDs: one rule per kind, pinned; QStash-safe; reversible; never colliding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import (
    ChangeEvent,
    EditEvent,
    Event,
    MessageEvent,
    PostbackEvent,
    ReactionEvent,
    ReadEvent,
    ReferralEvent,
    UnsendEvent,
    UnsupportedEvent,
)
from contracts.dedup import ID_PATTERN, escape_part, raw_digest, unescape_part

A, S, T = "17841400000000001", "1234567890123456", 1732500000999
RAW = {"x": 1}
DIGEST = raw_digest(RAW)

TABLE: list[tuple[str, Event, str]] = [
    ("message", MessageEvent(account_id=A, sender_id=S, mid="aWdfZAG1", raw=RAW), "ig_msg_aWdfZAG1"),
    ("echo is a message", MessageEvent(account_id=A, sender_id=A, mid="m1", direction="out", raw=RAW), "ig_msg_m1"),
    ("mid with =", MessageEvent(account_id=A, mid="ab==", raw=RAW), "ig_msg_ab-3D-3D"),
    ("mid with _ and -", MessageEvent(account_id=A, mid="a_b-c", raw=RAW), "ig_msg_a-5Fb--c"),
    ("mid with + and /", MessageEvent(account_id=A, mid="a+b/c", raw=RAW), "ig_msg_a-2Bb-2Fc"),
    ("mid with :", MessageEvent(account_id=A, mid="a:b", raw=RAW), "ig_msg_a-3Ab"),
    ("edit", EditEvent(account_id=A, sender_id=S, mid="m1", num_edit=2, raw=RAW), "ig_edit_m1_2"),
    ("unsend", UnsendEvent(account_id=A, sender_id=S, mid="m1", raw=RAW), "ig_del_m1"),
    ("reaction", ReactionEvent(account_id=A, sender_id=S, mid="m1", reaction="love", emoji="❤️", timestamp=T, raw=RAW),
     f"ig_react_m1_{S}_react_-E2-9D-A4-EF-B8-8F_{T}"),
    ("unreaction", ReactionEvent(account_id=A, sender_id=S, mid="m1", action="unreact", timestamp=T, raw=RAW),
     f"ig_react_m1_{S}_unreact__{T}"),
    ("read by mid", ReadEvent(account_id=A, sender_id=S, mid="m1", raw=RAW), f"ig_read_{S}_m1"),
    ("read by watermark", ReadEvent(account_id=A, sender_id=S, watermark=T, raw=RAW), f"ig_read_{S}_{T}"),
    ("postback", PostbackEvent(account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_postback_{S}_{T}_{DIGEST}"),
    ("referral", ReferralEvent(account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_referral_{S}_{T}_{DIGEST}"),
    ("unsupported", UnsupportedEvent(account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_unsupported_{S}_{T}_{DIGEST}"),
    ("comment", ChangeEvent(account_id=A, field="comments", object_id="178", raw=RAW), "ig_change_comments_178"),
    ("change without id", ChangeEvent(account_id=A, field="story_insights", raw=RAW), f"ig_change_story-5Finsights_{DIGEST}"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "event", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_dedup_id_is_pinned(name: str, event: Event, expected: str) -> None:
    assert event.dedup_id == expected
    assert ID_PATTERN.match(event.dedup_id)
    assert ":" not in event.dedup_id


def test_reaction_is_not_deduplicated_against_its_message() -> None:
    message = MessageEvent(account_id=A, sender_id=S, mid="m1", raw=RAW)
    kinds = [
        message,
        EditEvent(account_id=A, sender_id=S, mid="m1", num_edit=1, raw=RAW),
        UnsendEvent(account_id=A, sender_id=S, mid="m1", raw=RAW),
        ReactionEvent(account_id=A, sender_id=S, mid="m1", emoji="❤️", timestamp=T, raw=RAW),
        ReadEvent(account_id=A, sender_id=S, mid="m1", raw=RAW),
    ]
    assert len({event.dedup_id for event in kinds}) == len(kinds)


def test_each_edit_is_its_own_event() -> None:
    ids = {EditEvent(account_id=A, mid="m1", num_edit=n, raw=RAW).dedup_id for n in range(3)}
    assert len(ids) == 3


@given(st.text())
def test_escaping_is_reversible_and_qstash_safe(value: str) -> None:
    escaped = escape_part(value)
    assert unescape_part(escaped) == value
    assert escaped == "" or ID_PATTERN.match(escaped)
    assert "_" not in escaped  # parts can never blur into each other


@given(st.text(min_size=1), st.text(min_size=1))
def test_distinct_mids_never_share_an_id(first: str, second: str) -> None:
    a = MessageEvent(account_id=A, mid=first, raw={})
    b = MessageEvent(account_id=A, mid=second, raw={})
    assert (a.dedup_id == b.dedup_id) is (first == second)


def test_raw_digest_ignores_key_order_only() -> None:
    assert raw_digest({"a": 1, "b": 2}) == raw_digest({"b": 2, "a": 1})
    assert raw_digest({"a": 1}) != raw_digest({"a": 2})
