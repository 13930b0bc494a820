"""A Graph message becomes the contract event its webhook would have made."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contracts import MessageEvent
from ingest.graph.messages import graph_seconds, has_details, message_event
from tests.reconcile_kit import ACCOUNT, CUSTOMER, mid

LINK = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17920786367196703&signature=x"


def graph_message(**fields: Any) -> dict[str, Any]:
    """As `GET /{message-id}?fields=…` answers (Message reference, graph.md §3)."""
    return {
        "id": mid(7),
        "created_time": "2026-10-02T23:15:04+0000",
        "from": {"username": "jenny.dree", "id": CUSTOMER},
        "to": {"data": [{"username": "my_business", "id": ACCOUNT}]},
        "message": "is this still available?",
        **fields,
    }


def test_a_customers_text_message() -> None:
    event = message_event(graph_message(), ACCOUNT)
    assert isinstance(event, MessageEvent)
    assert event.dedup_id == f"ig_msg_{mid(7)}"  # the webhook's mid, byte for byte
    assert (event.account_id, event.sender_id, event.recipient_id) == (ACCOUNT, CUSTOMER, ACCOUNT)
    assert (event.direction, event.is_self, event.origin) == ("in", False, "reconcile")
    assert event.text == "is this still available?"
    assert event.timestamp == 1790982904000  # whole seconds, as milliseconds
    assert "message" not in event.raw and event.raw["from"]["username"] == "jenny.dree"


def test_a_message_from_the_account_is_outbound_and_to_itself_a_self_message() -> None:
    out = graph_message(**{"from": {"id": ACCOUNT}, "to": {"data": [{"id": CUSTOMER}]}})
    event = message_event(out, ACCOUNT)
    assert (event.direction, event.sender_id, event.recipient_id, event.is_self) == (
        "out", ACCOUNT, CUSTOMER, False,
    )  # fmt: skip
    own = message_event(graph_message(**{"from": {"id": ACCOUNT}}), ACCOUNT)
    assert (own.direction, own.is_self) == ("out", True)


def test_attachments_shares_and_story_mentions_become_attachments() -> None:
    item = graph_message(
        message="",
        attachments={"data": [
            {"id": "1", "image_data": {"url": "https://cdn/i.jpg", "width": 1080}},
            {"id": "2", "video_data": {"url": "https://cdn/v.mp4"}},
            {"id": "3", "file_url": "https://cdn/a.mp4", "mime_type": "audio/mpeg"},
            {"id": "4", "file_url": "https://cdn/f.pdf", "name": "f.pdf"},
            {"id": "5", "generic_template": {"title": "Blue mug", "url": "https://shop/mug"}},
            {"id": "6", "sticker": "?"},
        ]},
        shares={"data": [{"link": "https://www.instagram.com/p/XYZ/", "name": "a post"}]},
        story={"mention": {"link": LINK, "id": "17920786367196703"}},
    )  # fmt: skip
    event = message_event(item, ACCOUNT)
    assert event.text is None  # Meta's empty string: no text
    assert [(a.type, a.url, a.title) for a in event.attachments] == [
        ("image", "https://cdn/i.jpg", None),
        ("video", "https://cdn/v.mp4", None),
        ("audio", "https://cdn/a.mp4", None),
        ("file", "https://cdn/f.pdf", None),
        ("template", "https://shop/mug", "Blue mug"),
        ("unknown", None, None),
        ("share", "https://www.instagram.com/p/XYZ/", "a post"),
        ("story_mention", LINK, None),
    ]
    assert event.attachments[-1].story_id == "17920786367196703"
    assert event.attachments[0].payload["image_data"]["width"] == 1080
    assert event.story is None


@pytest.mark.parametrize(
    "fields",
    [
        {"story": {"reply_to": {"link": LINK, "id": "17920786367196703"}}},
        {"reply_to": {"story": {"url": LINK, "id": "17920786367196703"}}},
    ],
)
def test_a_story_reply_names_its_story(fields: dict[str, Any]) -> None:
    event = message_event(graph_message(**fields), ACCOUNT)
    assert event.story is not None
    assert (event.story.id, event.story.url) == ("17920786367196703", LINK)
    assert event.attachments == []


def test_a_reply_names_the_message_it_answers_and_unsupported_is_kept() -> None:
    event = message_event(graph_message(reply_to={"mid": mid(3), "is_self_reply": False}), ACCOUNT)
    assert event.reply_to_mid == mid(3)
    assert message_event(graph_message(is_unsupported=True), ACCOUNT).is_unsupported


@pytest.mark.parametrize(
    "item",
    [{"created_time": "2026-10-02T23:15:04+0000"}, {"id": ""}, {"id": "x" * 600}],
)
def test_a_message_no_event_can_hold_is_refused(item: dict[str, Any]) -> None:
    with pytest.raises((ValueError, ValidationError)):
        message_event({"from": {"id": CUSTOMER}, **item}, ACCOUNT)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2026-10-02T23:15:04+0000", 1790982904.0),
        ("2026-10-02T23:15:04Z", 1790982904.0),
        (1790982904, 1790982904.0),
        ("1790982904", 1790982904.0),
        (1790982904123, 1790982904.123),
        ("2026-10-02T23:15:04", None),  # no zone: not a time we can place
        ("yesterday", None),
        (True, None),
        (None, None),
    ],
)
def test_graph_times_in_either_form(value: object, seconds: float | None) -> None:
    assert graph_seconds(value) == seconds


def test_details_are_known_by_the_sender() -> None:
    assert has_details(graph_message())
    assert not has_details({"id": mid(1), "created_time": "2026-10-02T23:15:04+0000"})
