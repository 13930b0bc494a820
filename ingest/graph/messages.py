"""A message as the Graph API returns it, made the contract event a webhook would have made.

The message's Graph `id` is the webhook's `mid` (the same string, compared byte for
byte), so `ig_msg_<mid>` makes the two paths one: whichever arrives second is a duplicate
at admission. Shapes (Meta's Conversations API and Message reference, e.g.
developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/
conversations-api; consumers' code where the reference is silent, marked so below):
- `from {id, username}`; `to {data: [{id, username}]}` (a wrapped list); a message
  `from` the account is outbound, one from the account to itself is a self-message;
- `message`: the text, empty when there is none;
- `attachments.data[]`: `image_data{url}`, `video_data{url}`, `file_url`,
  `generic_template{title, url}`; `shares.data[]{link, name}`;
- `story.mention{link, id}` (chatwoot reads it so); any other `story` key, e.g. the
  unconfirmed `story.reply_to{link, id}`, is taken as the story replied to;
- `reply_to{mid}` (announced Dec 2025, unconfirmed) or `reply_to{story}`;
- `created_time`: `"2026-10-02T23:15:04+0000"` (whole seconds), an epoch number in
  some of Meta's samples: both are read.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from contracts import MessageEvent

JsonObject = dict[str, Any]
_MILLIS_FROM = 10**11  # an epoch beyond this is already in milliseconds
_LATEST = 253_402_300_800.0  # year 10000: a "time" beyond it (or 1e400, read as inf) is not one


def graph_seconds(value: object) -> float | None:
    """A Graph time (ISO 8601 with `+0000`, or an epoch number or digit string) in epoch
    seconds; None when it is neither, or no real time (JSON's `1e400` is Python's inf)."""
    seconds: float | None = None
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        return None  # a huge int would not even divide into a float
    if isinstance(value, int | float):
        seconds = value / 1000 if value >= _MILLIS_FROM else float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        seconds = parsed.timestamp() if parsed.tzinfo is not None else None
    if seconds is None or not math.isfinite(seconds) or not 0 <= seconds < _LATEST:
        return None
    return seconds


def has_details(item: JsonObject) -> bool:
    """Whether Meta gave this message's content: beyond a conversation's 20 newest it
    lists only the id (and the time)."""
    return isinstance(item.get("from"), dict)


class NoCustomer(ValueError):
    """A message whose customer cannot be told: erasure matches a customer's id, so
    without one an erased person's message would slip past the tombstone."""


def message_event(item: JsonObject, account_id: str) -> MessageEvent:
    """Raises `pydantic.ValidationError` (or ValueError) for a message no event can hold,
    `NoCustomer` for one without the customer's id (no `from` id; outbound, no `to` id)."""
    mid = item.get("id")
    if not isinstance(mid, str) or not mid:
        raise ValueError("a message without an id")
    sender = _id(item.get("from"))
    recipients = [_id(person) for person in _listed(item.get("to"))]
    outbound = sender == account_id
    if sender is None or (outbound and not (recipients and recipients[0])):
        raise NoCustomer("a message without its customer's id")
    seconds = graph_seconds(item.get("created_time"))
    if seconds is None and item.get("created_time") is not None:
        raise ValueError("a created_time that is not a time")
    story = _object(item.get("story"))
    reply_to = _object(item.get("reply_to"))
    replied_story = _object(reply_to.get("story")) or _replied_story(story)
    return MessageEvent.model_validate(
        {
            "account_id": account_id,
            "sender_id": sender,
            "recipient_id": recipients[0] if recipients else None,
            "timestamp": round(seconds * 1000) if seconds is not None else None,
            "origin": "reconcile",
            "mid": mid,
            "direction": "out" if outbound else "in",
            "is_self": outbound and bool(recipients) and set(recipients) == {account_id},
            "text": item.get("message") or None,
            "attachments": [
                *(attachment(a) for a in _listed(item.get("attachments"))),
                *(share(s) for s in _listed(item.get("shares"))),
                *_mention(story),
            ],
            "reply_to_mid": _text(reply_to.get("mid") or reply_to.get("id")),
            "story": {"id": _text(replied_story.get("id")), "url": _url(replied_story)}
            if replied_story
            else None,
            "is_unsupported": item.get("is_unsupported") is True,
            "raw": {key: value for key, value in item.items() if key != "message"},
        }
    )


def attachment(value: object) -> JsonObject:
    data = _object(value)
    kind, url, title = "unknown", None, None
    if image := _object(data.get("image_data")):
        kind, url = "image", _text(image.get("url"))
    elif video := _object(data.get("video_data")):
        kind, url = "video", _text(video.get("url"))
    elif template := _object(data.get("generic_template")):
        kind, title = "template", _text(template.get("title"))
        url = _text(template.get("url") or template.get("media_url"))
    elif data.get("file_url"):
        mime = _text(data.get("mime_type")) or ""
        kind, url = ("audio" if mime.startswith("audio/") else "file"), _text(data["file_url"])
    return {"type": kind, "url": url, "title": title, "payload": data}


def share(value: object) -> JsonObject:
    data = _object(value)
    return {"type": "share", "url": _text(data.get("link")), "title": _text(data.get("name")),
            "payload": data}  # fmt: skip


def _mention(story: JsonObject) -> list[JsonObject]:
    mention = _object(story.get("mention"))
    if not mention:
        return []
    return [{"type": "story_mention", "url": _url(mention), "story_id": _text(mention.get("id")),
             "payload": mention}]  # fmt: skip


def _replied_story(story: JsonObject) -> JsonObject:
    for key, value in story.items():
        if key != "mention" and isinstance(value, dict):
            return value
    return {}


def _url(data: JsonObject) -> str | None:
    return _text(data.get("link") or data.get("url"))


def _id(person: object) -> str | None:
    return _text(_object(person).get("id"))


def _listed(value: object) -> list[object]:
    """`{"data": [...]}` as Meta wraps lists, or a bare list."""
    if isinstance(value, dict):
        value = value.get("data")
    return value if isinstance(value, list) else []


def _object(value: object) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None
