"""What one messaging item says, as the fields of a contract event.

Each builder takes the item's body (`message`, `reaction`, …) and returns the event's
fields as a dict; the parser adds what every event of the entry shares and validates.
Shapes follow Meta's Instagram webhook pages and real deliveries (tests/fixtures/meta,
each with its source): shares that arrive twice, story shares without `url`, referrals
inside messages, `num_edit` as a number or a string, `is_self` on the message or on the
item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts import EventKind

JsonDict = dict[str, Any]
Fields = dict[str, Any]


def message(body: JsonDict, item: JsonDict) -> Fields:
    if body.get("is_deleted"):
        return {"kind": EventKind.UNSEND, "mid": body["mid"]}
    reply_to = _object(body.get("reply_to"))
    story = reply_to.get("story")
    quick_reply = body.get("quick_reply")
    return {
        "kind": EventKind.MESSAGE,
        "mid": body["mid"],
        "direction": "out" if body.get("is_echo") else "in",
        "is_self": bool(body.get("is_self") or item.get("is_self")),
        "text": body.get("text"),
        "attachments": attachments(body.get("attachments")),
        "reply_to_mid": reply_to.get("mid"),
        "story": {"id": text(story.get("id")), "url": story.get("url")}
        if isinstance(story, dict)
        else None,
        "quick_reply_payload": quick_reply.get("payload")
        if isinstance(quick_reply, dict)
        else None,
        "referral": referral(body["referral"]) if isinstance(body.get("referral"), dict) else None,
        "is_unsupported": bool(body.get("is_unsupported")),
    }


def attachments(value: object) -> list[Fields]:
    """One attachment per shared thing: since Nov 2025 a shared post arrives as a `share`
    and an `ig_post` of the same post; the `share` is dropped when its twin is there."""
    found = [attachment(a) for a in _items(value)]
    posts = {a["media_id"] or a["url"] for a in found if a["type"] == "ig_post"}
    return [a for a in found if not (a["type"] == "share" and (a["media_id"] or a["url"]) in posts)]


def attachment(value: object) -> Fields:
    if not isinstance(value, dict):
        return {"type": "unknown", "url": None, "media_id": None, "reel_id": None,
                "story_id": None, "title": None, "payload": {"value": value}}  # fmt: skip
    payload = _object(value.get("payload"))
    url = payload.get("url") if isinstance(payload.get("url"), str) else None
    story_url = payload.get("story_media_url")
    return {
        "type": str(value.get("type") or "unknown"),
        "url": url or (story_url if isinstance(story_url, str) else None),
        "media_id": text(payload.get("ig_post_media_id")),
        "reel_id": text(payload.get("reel_video_id")),
        "story_id": text(payload.get("story_media_id")),
        "title": payload.get("title") if isinstance(payload.get("title"), str) else None,
        "payload": payload,
    }


def referral(body: JsonDict) -> Fields:
    """A click-to-Direct ad (`ad_id`, `ads_context_data`), an ig.me link, a Shop product."""
    context = body.get("ads_context_data")
    context = context if isinstance(context, dict) else None
    product = _object(body.get("product"))
    return {
        "ref": text(body.get("ref")),
        "source": text(body.get("source")),
        "type": text(body.get("type")),
        "ad_id": text(body.get("ad_id")),
        "product_id": text(product.get("id")) or text((context or {}).get("product_id")),
        "ads_context_data": context,
    }


def edit(body: JsonDict, item: JsonDict) -> Fields:
    return {
        "kind": EventKind.EDIT,
        "mid": body["mid"],
        "text": body.get("text"),
        "num_edit": count(body.get("num_edit")) or 0,
    }


def reaction(body: JsonDict, item: JsonDict) -> Fields:
    return {
        "kind": EventKind.REACTION,
        "mid": body["mid"],
        "action": body.get("action") or "react",
        "reaction": body.get("reaction"),
        "emoji": body.get("emoji"),
    }


def read(body: JsonDict, item: JsonDict) -> Fields:
    return {
        "kind": EventKind.READ,
        "mid": body.get("mid"),
        "watermark": count(body.get("watermark")),
    }


def postback(body: JsonDict, item: JsonDict) -> Fields:
    return {
        "kind": EventKind.POSTBACK,
        "mid": body.get("mid"),
        "title": body.get("title"),
        "payload": body.get("payload"),
        "is_self": bool(item.get("is_self")),
    }


def referral_event(body: JsonDict, item: JsonDict) -> Fields:
    fields = referral(body)
    return {
        "kind": EventKind.REFERRAL,
        "ref": fields["ref"],
        "referral_source": fields["source"],
        "referral_type": fields["type"],
        "ad_id": fields["ad_id"],
        "product_id": fields["product_id"],
        "ads_context_data": fields["ads_context_data"],
    }


# Exactly one of these keys says what a messaging item is; checked in this order.
BUILDERS: tuple[tuple[str, Callable[[JsonDict, JsonDict], Fields]], ...] = (
    ("message", message),
    ("message_edit", edit),
    ("reaction", reaction),
    ("read", read),
    ("postback", postback),
    ("referral", referral_event),
)


def without_text(item: JsonDict, body_key: str) -> JsonDict:
    """The item with its message text removed: the event carries it once, in `text`."""
    body = item.get(body_key)
    if not isinstance(body, dict) or "text" not in body:
        return item
    return {**item, body_key: {k: v for k, v in body.items() if k != "text"}}


def text(value: object) -> str | None:
    """IDs arrive as strings (sometimes as numbers); anything else is absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def count(value: object) -> int | None:
    """A count or a time as Meta writes it: a number, or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 18:
        return int(value)
    return value if isinstance(value, int) else None


def _items(value: object) -> list[object]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _object(value: object) -> JsonDict:
    return value if isinstance(value, dict) else {}
