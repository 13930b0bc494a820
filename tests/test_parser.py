"""The parser over a corpus of real-shaped payloads, and over arbitrary JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import (
    ChangeEvent,
    EditEvent,
    MessageEvent,
    ReactionEvent,
    ReadEvent,
    ReferralEvent,
    UnsendEvent,
    UnsupportedEvent,
    event_from_json,
    event_to_json,
)
from ingest.parser import items_of, parse_delivery

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
EXPECTED: dict[str, list[str]] = json.loads((FIXTURES / "expected_kinds.json").read_text())


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_corpus_is_large_enough_and_complete() -> None:
    files = {p.stem for p in FIXTURES.glob("*.json")} - {"expected_kinds"}
    assert files == set(EXPECTED)
    assert len(files) >= 25
    kinds = {kind for expected in EXPECTED.values() for kind in expected}
    assert kinds == {
        "message",
        "message_edit",
        "message_unsend",
        "reaction",
        "read",
        "postback",
        "referral",
        "change",
        "unsupported",
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_the_expected_kinds(name: str) -> None:
    events = parse_delivery(load(name))
    assert [str(event.kind) for event in events] == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_event_round_trips_through_the_contract(name: str) -> None:
    for event in parse_delivery(load(name)):
        assert event_from_json(event_to_json(event)) == event


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_raw_item_is_kept_exactly_as_sent(name: str) -> None:
    payload = load(name)
    raws = [item for entry in payload["entry"] for _, item in items_of(entry)]
    assert [event.raw for event in parse_delivery(payload)] == raws


def test_text_message_fields() -> None:
    (event,) = parse_delivery(load("text_message"))
    assert isinstance(event, MessageEvent)
    assert event.text == "Hi! Is the blue one still available? 💙"
    assert event.sender_id == "1234567890123456"
    assert event.recipient_id == event.account_id == "17841400000000001"
    assert event.timestamp == 1732500000001
    assert event.direction == "in"
    assert event.dedup_id == f"ig_msg_{event.mid}"


def test_attachment_urls_are_kept_as_given() -> None:
    (event,) = parse_delivery(load("every_attachment_type"))
    assert isinstance(event, MessageEvent)
    assert [a.type for a in event.attachments] == [
        "image", "video", "audio", "file", "share",
        "story_mention", "ig_reel", "reel", "template", "fallback",
    ]  # fmt: skip
    assert all(a.url == f"https://cdn.example/{a.type}" for a in event.attachments)
    (signed,) = parse_delivery(load("image_attachment"))
    assert isinstance(signed, MessageEvent)
    assert signed.attachments[0].url == (
        "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&signature=abc"
    )


def test_story_reply_carries_the_story() -> None:
    (event,) = parse_delivery(load("story_reply"))
    assert isinstance(event, MessageEvent)
    assert event.story is not None
    assert event.story.id == "18000000000000001"
    assert event.story.url is not None and event.story.url.startswith("https://lookaside")


def test_reply_to_and_quick_reply() -> None:
    (reply,) = parse_delivery(load("reply_to_message"))
    (quick,) = parse_delivery(load("quick_reply"))
    assert isinstance(reply, MessageEvent) and reply.reply_to_mid is not None
    assert isinstance(quick, MessageEvent) and quick.quick_reply_payload == "COLOR_BLUE"


def test_echo_is_outbound_and_sent_by_the_business() -> None:
    (event,) = parse_delivery(load("echo"))
    assert isinstance(event, MessageEvent)
    assert event.direction == "out"
    assert event.sender_id == event.account_id


def test_unsend_edit_reaction_read() -> None:
    (unsend,) = parse_delivery(load("unsend"))
    (edit,) = parse_delivery(load("edit"))
    (reaction,) = parse_delivery(load("reaction"))
    (unreaction,) = parse_delivery(load("unreaction"))
    (watermark,) = parse_delivery(load("read_watermark"))
    assert isinstance(unsend, UnsendEvent)
    assert isinstance(edit, EditEvent) and edit.num_edit == 1
    assert isinstance(reaction, ReactionEvent) and reaction.emoji == "❤️"
    assert isinstance(unreaction, ReactionEvent) and unreaction.action == "unreact"
    assert isinstance(watermark, ReadEvent) and watermark.watermark == 1732500000011


def test_reaction_is_not_deduplicated_against_its_message() -> None:
    events = parse_delivery(load("batch_several_items"))
    ids = [event.dedup_id for event in events]
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("ig_msg_") and ids[1].startswith("ig_react_")


def test_unsupported_message_flag_is_kept() -> None:
    (event,) = parse_delivery(load("unsupported_message"))
    assert isinstance(event, MessageEvent) and event.is_unsupported


def test_referral_fields() -> None:
    (event,) = parse_delivery(load("referral_ad"))
    assert isinstance(event, ReferralEvent)
    assert (event.ref, event.referral_source, event.referral_type) == (
        "summer_sale",
        "ADS",
        "OPEN_THREAD",
    )


def test_comment_change_is_keyed_by_its_id() -> None:
    (event,) = parse_delivery(load("comment_change"))
    assert isinstance(event, ChangeEvent)
    assert event.field == "comments"
    assert event.object_id == "17865799348089039"
    assert event.sender_id == "1234567890123456"
    assert event.dedup_id == "ig_change_comments_17865799348089039"


def test_messaging_shaped_changes_are_parsed_like_messaging() -> None:
    (event,) = parse_delivery(load("messages_as_change"))
    assert isinstance(event, MessageEvent)
    assert event.source == "changes"
    assert event.text == "via changes"
    assert event.raw["field"] == "messages"


def test_message_without_mid_is_kept_as_unsupported_not_dropped() -> None:
    (event,) = parse_delivery(load("missing_mid_is_kept"))
    assert isinstance(event, UnsupportedEvent)
    assert event.raw["message"] == {"text": "no mid here"}
    assert event.sender_id == "1234567890123456"


def test_every_entry_and_every_item_is_handled() -> None:
    events = parse_delivery(load("batch_several_entries"))
    assert [e.account_id for e in events] == [
        "17841400000000001",
        "17841400000000002",
        "17841400000000002",
        "17841400000000001",
    ]


def test_page_envelopes_are_parsed_like_instagram() -> None:
    assert [str(e.kind) for e in parse_delivery(load("page_object"))] == ["message"]


@pytest.mark.parametrize("payload", [None, 1, "x", [], {}, {"entry": "nope"}, {"entry": None}])
def test_non_envelopes_yield_no_events(payload: Any) -> None:
    assert parse_delivery(payload) == []


def test_odd_items_are_wrapped_not_lost() -> None:
    payload = {"entry": [7, {"id": 1, "messaging": [None, "x", {"message": 3}], "changes": [[]]}]}
    events = parse_delivery(payload)
    assert all(isinstance(e, UnsupportedEvent) for e in events)
    assert [e.raw for e in events] == [
        {"item": 7},
        {"item": None},
        {"item": "x"},
        {"message": 3},
        {"item": []},
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    ["message", "message_edit", "reaction", "read", "postback", "referral", "mid", "text",
     "sender", "recipient", "timestamp", "id", "is_echo", "is_deleted", "attachments",
     "field", "value", "reply_to", "story", "emoji", "action", "num_edit", "watermark"]
)  # fmt: skip
meta_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)
envelopes = st.fixed_dictionaries(
    {"object": json_values, "entry": st.lists(
        st.dictionaries(st.sampled_from(["id", "time", "messaging", "changes", "standby"]),
                        st.lists(meta_like, max_size=4) | meta_like, max_size=4) | meta_like,
        max_size=4,
    )}
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parser_never_raises_on_arbitrary_json(payload: Any) -> None:
    parse_delivery(payload)


@settings(max_examples=500, deadline=None)
@given(envelopes)
def test_parser_never_loses_an_item(payload: dict[str, Any]) -> None:
    items = [item for entry in payload["entry"] for _, item in items_of(entry)]
    events = parse_delivery(payload)
    assert len(events) == len(items)
    for event in events:
        assert event_from_json(event_to_json(event)).dedup_id == event.dedup_id
