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
from ingest.edge.parser import items_of, parse_delivery

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


def _with_text(event: Any) -> Any:
    """The raw item with the text the event carries put back (it travels only once)."""
    raw = event.raw
    if getattr(event, "text", None) is None or event.kind not in ("message", "message_edit"):
        return raw
    key = "message" if event.kind == "message" else "message_edit"
    if "value" in raw:  # the changes shape
        return {**raw, "value": {**raw["value"], key: {**raw["value"][key], "text": event.text}}}
    return {**raw, key: {**raw[key], "text": event.text}}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_raw_item_is_kept_as_sent_and_the_text_travels_once(name: str) -> None:
    payload = load(name)
    raws = [item for entry in payload["entry"] for _, item in items_of(entry)]
    events = parse_delivery(payload)
    assert [_with_text(event) for event in events] == raws
    for event in events:
        body = (event.raw.get("value") or event.raw) if event.source == "changes" else event.raw
        if event.kind == "message" and isinstance(body.get("message"), dict):
            assert "text" not in body["message"]


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


def test_comment_change_keeps_its_id_author_and_time() -> None:
    (event,) = parse_delivery(load("comment_change"))
    assert isinstance(event, ChangeEvent)
    assert event.field == "comments"
    assert event.object_id == "17865799348089039"
    assert event.sender_id == "1234567890123456"
    assert event.dedup_id.startswith(f"ig_change_{event.account_id}_{event.sender_id}_")


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


def test_page_envelopes_are_parsed_and_say_they_are_messenger() -> None:
    (event,) = parse_delivery(load("messenger_page_object"))
    assert (event.kind, event.platform) == ("message", "messenger")
    (instagram,) = parse_delivery(load("text_message"))
    assert instagram.platform == "instagram"


@pytest.mark.parametrize("payload", [None, 1, "x", [], {}, {"entry": "nope"}, {"entry": None}])
def test_non_envelopes_yield_no_events(payload: Any) -> None:
    assert parse_delivery(payload) == []


def test_odd_items_are_wrapped_not_lost() -> None:
    payload = {"entry": [7, {"id": 1, "messaging": [None, "x", {"message": 3}], "changes": [[]]}]}
    events = parse_delivery(payload)
    assert all(isinstance(e, UnsupportedEvent) for e in events)
    assert [e.raw for e in events] == [
        {"entry": 7},
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


# --- what real deliveries carry (issue 14), one test per shape ----------------------------


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("comment_on_ad_seconds", 1701284314),
        ("mention_on_comment_seconds", 1520622968),
        ("story_insights_seconds", 1547687043),
        ("comment_change", 1732500000),
    ],
)
def test_changes_times_are_seconds_and_become_milliseconds(name: str, seconds: int) -> None:
    (event,) = parse_delivery(load(name))
    assert event.timestamp == seconds * 1000


@pytest.mark.parametrize(
    "name", ["dashboard_test_messages_changes", "dashboard_test_messages_messaging",
             "dashboard_test_comments"],
)  # fmt: skip
def test_dashboard_test_deliveries_are_test_events_never_customer_messages(name: str) -> None:
    events = parse_delivery(load(name))
    assert events and all(e.is_test and isinstance(e, UnsupportedEvent) for e in events)


def test_a_post_shared_as_share_and_ig_post_is_one_attachment_with_its_ids() -> None:
    (event,) = parse_delivery(load("share_and_ig_post_same_post"))
    assert isinstance(event, MessageEvent)
    (post,) = event.attachments
    assert post.type == "ig_post"
    assert post.media_id and post.url and post.title is not None


def test_story_share_uses_its_story_media_url_and_reel_keeps_its_ids() -> None:
    (story,) = parse_delivery(load("ig_story_share"))
    (reel,) = parse_delivery(load("ig_reel_share"))
    assert isinstance(story, MessageEvent) and isinstance(reel, MessageEvent)
    (shared_story,) = story.attachments
    assert shared_story.story_id and shared_story.url == shared_story.payload["story_media_url"]
    (shared_reel,) = reel.attachments
    assert shared_reel.reel_id == shared_reel.payload["reel_video_id"]
    assert shared_reel.title and shared_reel.url


def test_referral_inside_a_message_is_modelled() -> None:
    (ad,) = parse_delivery(load("referral_in_message_ad"))
    (product,) = parse_delivery(load("referral_in_message_product"))
    assert isinstance(ad, MessageEvent) and ad.referral is not None
    assert ad.referral.ad_id and ad.referral.source == "ADS"
    assert ad.referral.ads_context_data and "ad_title" in ad.referral.ads_context_data
    assert isinstance(product, MessageEvent) and product.referral is not None
    assert product.referral.product_id


@pytest.mark.parametrize(("name", "count"), [("edit_num_edit_int", 1), ("edit_num_edit_string", 2)])
def test_num_edit_is_read_as_a_number_or_a_string(name: str, count: int) -> None:
    payload = load(name)
    body = payload["entry"][0]["messaging"][0]["message_edit"]
    (event,) = parse_delivery(payload)
    assert isinstance(event, EditEvent)
    assert event.num_edit == int(body["num_edit"]) == event.num_edit
    assert event.num_edit >= 1 or count == 0


def test_an_edit_with_num_edit_zero_and_no_text_is_kept() -> None:
    (event,) = parse_delivery(load("edit_num_edit_zero_no_text"))
    assert isinstance(event, EditEvent) and (event.num_edit, event.text) == (0, None)


def test_self_messages_and_standby_items_say_so() -> None:
    (echo,) = parse_delivery(load("self_message_echo"))
    (postback,) = parse_delivery(load("self_postback"))
    (standby,) = parse_delivery(load("standby_message"))
    assert isinstance(echo, MessageEvent) and echo.is_self and echo.direction == "out"
    assert postback.kind == "postback" and postback.is_self  # type: ignore[union-attr]
    assert standby.standby and not echo.standby


def test_entry_shapes_that_used_to_vanish_are_kept() -> None:
    (change,) = parse_delivery(load("entry_field_value_comment"))
    (fields,) = parse_delivery(load("changed_fields_entry"))
    assert isinstance(change, ChangeEvent) and change.field == "comments"
    assert isinstance(fields, UnsupportedEvent) and "changed_fields" in fields.raw


def test_an_unrecognised_change_keeps_its_field_sender_and_time() -> None:
    payload = {"object": "instagram", "entry": [{"id": "1", "time": 1700000000, "changes": [
        {"field": "messages", "value": {"sender": {"id": "42"}, "mystery": {}}}]}]}  # fmt: skip
    (event,) = parse_delivery(payload)
    assert isinstance(event, UnsupportedEvent)
    assert (event.field, event.sender_id) == ("messages", "42")
