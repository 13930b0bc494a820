"""Meta's webhook envelope in, contract events out: a pure function.

Rules that keep nothing from being lost:
- every element of every ``entry[].messaging[]``, ``entry[].standby[]`` and
  ``entry[].changes[]`` becomes exactly one event (items in == events out);
- an item we do not recognise, or one whose shape is off (a missing ``mid``, a
  number where an object belongs), becomes an `UnsupportedEvent` carrying the
  raw item, never an exception;
- any envelope ``object`` is parsed the same way (``instagram``, or ``page`` for
  Messenger-linked setups): a signed delivery is Meta's, so it is kept.

``changes`` items whose field carries a messaging event (the "Instagram API with
Instagram Login" shape) are parsed like ``messaging`` items, with
``source="changes"`` and the whole change item as ``raw``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from contracts import (
    Attachment,
    ChangeEvent,
    EditEvent,
    Event,
    MessageEvent,
    PostbackEvent,
    ReactionEvent,
    ReadEvent,
    ReferralEvent,
    Story,
    UnsendEvent,
    UnsupportedEvent,
)

JsonDict = dict[str, Any]

# `changes` fields whose value is a messaging event.
MESSAGING_FIELDS = frozenset(
    {
        "messages",
        "messaging_seen",
        "message_reactions",
        "messaging_postbacks",
        "messaging_referral",
        "message_edit",
        "messaging_optins",
        "messaging_handover",
    }
)
_MAX_TIMESTAMP = 10**15  # far beyond any real millisecond timestamp; larger is not a time


def is_envelope(payload: object) -> bool:
    """A webhook envelope is a JSON object with an ``entry`` array."""
    return isinstance(payload, dict) and isinstance(payload.get("entry"), list)


# Entry keys holding items, and how their items are read (`standby`: handover protocol).
_ENTRY_KEYS = (("messaging", "messaging"), ("standby", "messaging"), ("changes", "changes"))


def items_of(entry: object) -> list[tuple[str, object]]:
    """The items of one entry as ``(source, item)``; a non-object entry is one odd item."""
    if not isinstance(entry, dict):
        return [("entry", entry)]
    found: list[tuple[str, object]] = []
    for key, source in (
        ("messaging", "messaging"),
        ("standby", "messaging"),
        ("changes", "changes"),
    ):
        value = entry.get(key)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            found.append((source, item))
    return found


def parse_delivery(payload: object) -> list[Event]:
    """All events of one delivery, in order. Never raises."""
    if not is_envelope(payload):
        return []
    assert isinstance(payload, dict)
    events: list[Event] = []
    for entry in payload["entry"]:
        account_id = _text(entry.get("id")) if isinstance(entry, dict) else None
        entry_time = _timestamp(entry.get("time")) if isinstance(entry, dict) else None
        for source, item in items_of(entry):
            events.append(_parse_item(source, item, account_id or "", entry_time))
    return events


def _parse_item(source: str, item: object, account_id: str, entry_time: int | None) -> Event:
    if not isinstance(item, dict):
        return UnsupportedEvent(account_id=account_id, raw={"item": item})
    try:
        if source == "changes":
            return _change(item, account_id, entry_time)
        return _messaging(item, account_id, source="messaging", raw=item)
    except (ValidationError, TypeError, ValueError, KeyError, AttributeError):
        return UnsupportedEvent(account_id=account_id, raw=item, **_sender_fields(item))


def _change(item: JsonDict, account_id: str, entry_time: int | None) -> Event:
    field, value = item.get("field"), item.get("value")
    if not isinstance(field, str) or not isinstance(value, dict):
        return UnsupportedEvent(account_id=account_id, raw=item, field=_text(field))
    if field in MESSAGING_FIELDS:
        return _messaging(value, account_id, source="changes", raw=item, field=field)
    author = value.get("from")
    return ChangeEvent(
        account_id=account_id,
        field=field,
        object_id=_text(value.get("id")),
        sender_id=_text(author.get("id")) if isinstance(author, dict) else None,
        timestamp=_timestamp(value.get("timestamp")) or entry_time,
        raw=item,
    )


def _messaging(
    item: JsonDict, account_id: str, *, source: str, raw: JsonDict, field: str | None = None
) -> Event:
    common: JsonDict = {
        "account_id": account_id,
        "source": source,
        "raw": raw,
        **_sender_fields(item),
    }
    for key, build in _BUILDERS:
        body = item.get(key)
        if body is not None:
            if not isinstance(body, dict):
                raise TypeError(f"{key} is not an object")
            return build(body, common)
    return UnsupportedEvent(**common, field=field)


def _message(body: JsonDict, common: JsonDict) -> Event:
    mid = body["mid"]
    if body.get("is_deleted"):
        return UnsendEvent(mid=mid, **common)
    reply_to = _object(body.get("reply_to"))
    story = reply_to.get("story")
    quick_reply = body.get("quick_reply")
    return MessageEvent(
        mid=mid,
        direction="out" if body.get("is_echo") else "in",
        text=body.get("text"),
        attachments=[_attachment(a) for a in _items(body.get("attachments"))],
        reply_to_mid=reply_to.get("mid"),
        story=Story(id=_text(story.get("id")), url=story.get("url"))
        if isinstance(story, dict)
        else None,
        quick_reply_payload=quick_reply.get("payload") if isinstance(quick_reply, dict) else None,
        is_unsupported=bool(body.get("is_unsupported")),
        **common,
    )


def _attachment(value: object) -> Attachment:
    if not isinstance(value, dict):
        return Attachment(type="unknown", payload={"value": value})
    payload = _object(value.get("payload"))
    url = payload.get("url")
    return Attachment(
        type=str(value.get("type") or "unknown"),
        url=url if isinstance(url, str) else None,
        payload=payload,
    )


def _edit(body: JsonDict, common: JsonDict) -> Event:
    return EditEvent(
        mid=body["mid"], text=body.get("text"), num_edit=body.get("num_edit") or 0, **common
    )


def _reaction(body: JsonDict, common: JsonDict) -> Event:
    return ReactionEvent(
        mid=body["mid"],
        action=body.get("action") or "react",
        reaction=body.get("reaction"),
        emoji=body.get("emoji"),
        **common,
    )


def _read(body: JsonDict, common: JsonDict) -> Event:
    return ReadEvent(mid=body.get("mid"), watermark=_timestamp(body.get("watermark")), **common)


def _postback(body: JsonDict, common: JsonDict) -> Event:
    return PostbackEvent(
        mid=body.get("mid"), title=body.get("title"), payload=body.get("payload"), **common
    )


def _referral(body: JsonDict, common: JsonDict) -> Event:
    return ReferralEvent(
        ref=_text(body.get("ref")),
        referral_source=_text(body.get("source")),
        referral_type=_text(body.get("type")),
        **common,
    )


# Exactly one of these keys says what a messaging item is; checked in this order.
_BUILDERS: tuple[tuple[str, Callable[[JsonDict, JsonDict], Event]], ...] = (
    ("message", _message),
    ("message_edit", _edit),
    ("reaction", _reaction),
    ("read", _read),
    ("postback", _postback),
    ("referral", _referral),
)


def _sender_fields(item: JsonDict) -> JsonDict:
    sender, recipient = item.get("sender"), item.get("recipient")
    return {
        "sender_id": _text(sender.get("id")) if isinstance(sender, dict) else None,
        "recipient_id": _text(recipient.get("id")) if isinstance(recipient, dict) else None,
        "timestamp": _timestamp(item.get("timestamp")),
    }


def _items(value: object) -> list[object]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _object(value: object) -> JsonDict:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    """IDs arrive as strings (sometimes as numbers); anything else is absent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value)
    return None


def _timestamp(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and 0 <= value < _MAX_TIMESTAMP:
        return value
    return None
