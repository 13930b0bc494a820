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
    ("read by mid", ReadEvent(account_id=A, sender_id=S, mid="m1", raw=RAW), f"ig_read_{A}_{S}_m1"),
    ("read by watermark", ReadEvent(account_id=A, sender_id=S, watermark=T, raw=RAW), f"ig_read_{A}_{S}_{T}"),
    ("postback", PostbackEvent(account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_postback_{A}_{S}_{T}_{DIGEST}"),
    ("referral", ReferralEvent(account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_referral_{A}_{S}_{T}_{DIGEST}"),
    ("unsupported", UnsupportedEvent(account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_unsupported_{A}_{S}_{T}_{DIGEST}"),
    ("unsupported kept as text", UnsupportedEvent(account_id=A, raw_text='{"x":1}', timestamp=T),
     f"ig_unsupported_{A}__{T}_{raw_digest(chr(123) + chr(34) + 'x' + chr(34) + ':1' + chr(125))}"),
    ("comment", ChangeEvent(account_id=A, sender_id=S, field="comments", object_id="178", timestamp=T, raw=RAW),
     f"ig_change_{A}_{S}_{T}_{DIGEST}"),
    # v1 events (still in QStash, its DLQ or the ledger) keep the IDs they were admitted under
    ("v1 read", ReadEvent(v=1, account_id=A, sender_id=S, mid="m1", raw=RAW), f"ig_read_{S}_m1"),
    ("v1 postback", PostbackEvent(v=1, account_id=A, sender_id=S, timestamp=T, raw=RAW), f"ig_postback_{S}_{T}_{DIGEST}"),
    ("v1 comment", ChangeEvent(v=1, account_id=A, field="comments", object_id="178", raw=RAW), "ig_change_comments_178"),
    ("v1 change without id", ChangeEvent(v=1, account_id=A, field="story_insights", raw=RAW), f"ig_change_story-5Finsights_{DIGEST}"),
    ("v1 message", MessageEvent(v=1, account_id=A, mid="m1", raw=RAW), "ig_msg_m1"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "event", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_dedup_id_is_pinned(name: str, event: Event, expected: str) -> None:
    assert event.dedup_id == expected
    assert ID_PATTERN.fullmatch(event.dedup_id)
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
    assert escaped == "" or ID_PATTERN.fullmatch(escaped)
    assert "_" not in escaped  # parts can never blur into each other


ids = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1)


@given(ids, ids)
def test_distinct_mids_never_share_an_id(first: str, second: str) -> None:
    a = MessageEvent(account_id=A, mid=first, raw={})
    b = MessageEvent(account_id=A, mid=second, raw={})
    assert (a.dedup_id == b.dedup_id) is (first == second)


def test_raw_digest_ignores_key_order_only() -> None:
    assert raw_digest({"a": 1, "b": 2}) == raw_digest({"b": 2, "a": 1})
    assert raw_digest({"a": 1}) != raw_digest({"a": 2})


def test_two_accounts_never_share_a_read_or_postback_id() -> None:
    one = PostbackEvent(account_id="1", sender_id=S, timestamp=T, raw=RAW)
    two = PostbackEvent(account_id="2", sender_id=S, timestamp=T, raw=RAW)
    assert one.dedup_id != two.dedup_id
    reads = [ReadEvent(account_id=account, mid="m", raw={}) for account in ("1", "2")]
    assert reads[0].dedup_id != reads[1].dedup_id


def test_an_id_too_long_for_an_index_is_replaced_by_its_digest() -> None:
    event = MessageEvent(account_id=A, mid="é" * 500, raw={})
    assert len(event.dedup_id) < 100
    assert event.dedup_id.startswith("ig_msg_--")
    assert event.dedup_id != MessageEvent(account_id=A, mid="é" * 499 + "e", raw={}).dedup_id


@given(st.text())
def test_escaping_covers_lone_surrogates_too(value: str) -> None:
    with_surrogate = value + "\ud800"
    assert unescape_part(escape_part(with_surrogate)) == with_surrogate


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_parts_escape_exactly_as_the_byte_by_byte_definition(value: str) -> None:
    from contracts.dedup import _escape_bytes

    assert escape_part(value) == _escape_bytes(value)
