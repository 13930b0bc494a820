"""Meta's webhook envelope in, contract events out: a pure function that never raises.

Rules that keep nothing from being lost:
- every element of every entry's ``messaging[]``, ``standby[]`` and ``changes[]`` (and
  an entry's own ``field``/``value``, as Meta's Business-Login template writes it)
  becomes exactly one event; an entry with nothing we recognise becomes one
  `UnsupportedEvent` of its own;
- an item we do not recognise, or whose shape is off, becomes an `UnsupportedEvent`
  with its raw item (and, from ``changes``, its field, sender and time);
- an item the database could not hold as it is (an identifier too long or carrying a
  lone surrogate, a number beyond any column, nesting beyond the contract's depth)
  becomes an `UnsupportedEvent` keeping the item whole as ``raw_text``; free text is
  cleaned by the contract (lone surrogates and U+0000 become U+FFFD);
- the App Dashboard's "Test" deliveries (entry id ``"0"``, sender ``12334`` and
  recipient ``23245``) are kept as test events, never as a customer's message;
- any envelope ``object`` is parsed; ``page`` (Messenger) events say so in ``platform``.

Times: ``messaging[]`` and ``standby[]`` carry milliseconds; ``changes[]`` carry seconds
(``entry.time``, and the dashboard's string ``timestamp``), made milliseconds here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import structlog
from pydantic import ValidationError

from contracts import EVENT_ADAPTER, Event, UnsupportedEvent
from contracts.values import MAX_DEPTH, STORABLE, clean_json
from ingest.edge import items as build
from ingest.edge.safe_json import exact_dumps, has_marks

JsonDict = dict[str, Any]

log = structlog.get_logger(__name__)

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
TEST_ACCOUNT = "0"
TEST_SENDER, TEST_RECIPIENT = "12334", "23245"
_MILLIS_FROM = 10**11  # below: seconds (year 5138); above: milliseconds (1973 on)
_ENTRY_KEYS = frozenset({"id", "time", "messaging", "standby", "changes", "field", "value"})


class _Entry(NamedTuple):
    """What every event of one entry shares (a tuple: one per entry, on the hot path)."""

    account_id: str
    time_ms: int | None
    platform: str
    storable: bool
    source: str = "messaging"
    standby: bool = False

    @property
    def is_test(self) -> bool:
        return self.account_id == TEST_ACCOUNT


def is_envelope(payload: object) -> bool:
    """A webhook envelope is a JSON object with an ``entry`` array."""
    return isinstance(payload, dict) and isinstance(payload.get("entry"), list)


def parse_delivery(payload: object, *, storable: bool = False) -> list[Event]:
    """All events of one delivery, in order. Never raises.

    `storable`: the JSON was checked already (`ingest.edge.safe_json.Loaded.clean`), so raw
    items need no walk to be made storable; without it, every item is checked."""
    if not is_envelope(payload):
        return []
    assert isinstance(payload, dict)
    platform = "messenger" if payload.get("object") == "page" else "instagram"
    events: list[Event] = []
    for entry in payload["entry"]:
        events.extend(_entry(entry, platform, storable))
    return events


def items_of(entry: object) -> list[tuple[str, object]]:
    """Every item of one entry as ``(where, item)``, ``where`` one of messaging, standby,
    changes, or entry (an entry with nothing else we recognise, kept whole)."""
    if not isinstance(entry, dict):
        return [("entry", {"entry": entry})]
    found = [
        (key, item)
        for key in ("messaging", "standby", "changes")
        for item in _listed(entry.get(key))
    ]
    if "field" in entry and "value" in entry:  # a change written on the entry itself
        found.append(("changes", {"field": entry["field"], "value": entry["value"]}))
    if not found and set(entry) - _ENTRY_KEYS:
        found.append(("entry", entry))
    return found


def _entry(entry: object, platform: str, storable: bool) -> list[Event]:
    account = build.text(entry.get("id")) if isinstance(entry, dict) else None
    time = entry.get("time") if isinstance(entry, dict) else None
    base = _Entry(account or "", _millis(time), platform, storable)
    contexts = {"messaging": base}  # the others are derived on first use: most never are
    events: list[Event] = []
    for where, item in items_of(entry):
        context = contexts.get(where) or contexts.setdefault(where, _derived(base, where, time))
        if where != "entry":
            events.append(_item(item, context))
        elif isinstance(item, dict) and "changed_fields" in item:
            events.append(_unsupported(item, context, "changed_fields without their values"))
        else:
            events.append(_unsupported(item, context, "an entry with nothing we recognise"))
    return events


def _derived(base: _Entry, where: str, time: object) -> _Entry:
    """The context of a `standby` item, or of a `changes` item or the entry itself
    (whose `time` Meta sends in seconds)."""
    if where == "standby":
        return base._replace(standby=True)
    return base._replace(source="changes", time_ms=_millis(time, seconds=True))


def _item(item: object, entry: _Entry) -> Event:
    if not isinstance(item, dict):
        return _unsupported({"item": item}, entry, "an item that is not an object")
    if not entry.storable and (has_marks(item) or _too_deep(item)):
        return _unsupported(item, entry, "a value the database cannot hold as it is")
    try:
        fields = _change(item, entry) if entry.source == "changes" else _messaging(item, entry)
        return _validated(fields, entry)
    except (ValidationError, TypeError, ValueError, KeyError, AttributeError):
        return _unsupported(item, entry, "not the shape of any event we model")


def _messaging(
    item: JsonDict, entry: _Entry, *, change: JsonDict | None = None, field: str | None = None
) -> dict[str, Any]:
    """A messaging item's fields; `change`: the `changes` item it came in (its raw)."""
    common = {**_people(item, entry), "raw": change if change is not None else item}
    if entry.is_test or _test_people(common):
        return {**common, **_test(field or "messages")}
    for key, builder in build.BUILDERS:
        body = item.get(key)
        if body is not None:
            if not isinstance(body, dict):
                raise TypeError(f"{key} is not an object")
            stripped = build.without_text(item, key)
            common["raw"] = stripped if change is None else {**change, "value": stripped}
            return {**common, **builder(body, item)}
    return {**common, "kind": "unsupported", "field": field, "reason": "unrecognised item"}


def _change(item: JsonDict, entry: _Entry) -> dict[str, Any]:
    field, value = item.get("field"), item.get("value")
    if not isinstance(field, str) or not isinstance(value, dict):
        raise TypeError("a change without a field name or a value object")
    if field in MESSAGING_FIELDS:
        return _messaging(value, entry, change=item, field=field)
    author = value.get("from")
    sender = build.text(author.get("id")) if isinstance(author, dict) else None
    common = {
        "sender_id": sender,
        "timestamp": _millis(value.get("timestamp"), seconds=True) or entry.time_ms,
        "raw": item,
    }
    if entry.is_test:
        return {**common, **_test(field)}
    object_id = value.get("id") or value.get("comment_id") or value.get("media_id")
    return {**common, "kind": "change", "field": field, "object_id": build.text(object_id)}


def _people(item: JsonDict, entry: _Entry) -> dict[str, Any]:
    sender, recipient = item.get("sender"), item.get("recipient")
    seconds = entry.source == "changes"
    return {
        "sender_id": build.text(sender.get("id")) if isinstance(sender, dict) else None,
        "recipient_id": build.text(recipient.get("id")) if isinstance(recipient, dict) else None,
        "timestamp": _millis(item.get("timestamp"), seconds=seconds),
    }


def _test_people(common: dict[str, Any]) -> bool:
    return (common["sender_id"], common["recipient_id"]) == (TEST_SENDER, TEST_RECIPIENT)


def _test(field: str) -> dict[str, Any]:
    log.info("webhook_test_delivery", field=field)
    return {"kind": "unsupported", "is_test": True, "field": field,
            "reason": "the App Dashboard's test delivery"}  # fmt: skip


def _validated(fields: dict[str, Any], entry: _Entry) -> Event:
    data = {
        "account_id": entry.account_id,
        "source": entry.source,
        "platform": entry.platform,
        "standby": entry.standby,
        **fields,
    }
    if entry.is_test:
        data["is_test"] = True
    return EVENT_ADAPTER.validate_python(data, context=STORABLE if entry.storable else None)


def _unsupported(item: object, entry: _Entry, reason: str) -> Event:
    """Keep `item` whole: as `raw` when the database can hold it, else as JSON text.
    Sender and time are kept when they are usable (a change's field too)."""
    people = _people(item, entry) if isinstance(item, dict) else {}
    if entry.source == "changes":
        value = item.get("value") if isinstance(item, dict) else None
        author = value.get("from") if isinstance(value, dict) else None
        people = {
            "sender_id": build.text(author.get("id")) if isinstance(author, dict) else None,
            "timestamp": entry.time_ms,
        }
    field = item.get("field") if isinstance(item, dict) else None
    base: dict[str, Any] = {
        "kind": "unsupported",
        "account_id": entry.account_id,
        "source": entry.source,
        "platform": entry.platform,
        "standby": entry.standby,
        "is_test": entry.is_test,
        "reason": reason,
    }
    if _storable(item):
        base["raw"] = item
    else:
        base["raw_text"] = exact_dumps(item)
    extra = {**people, "field": field}
    while True:  # keep what validates: a bad time must not take the sender with it
        try:
            return EVENT_ADAPTER.validate_python({**base, **extra})
        except ValidationError as exc:
            bad = {str(e["loc"][-1]) for e in exc.errors() if e["loc"]} & extra.keys()
        if not bad:
            break
        extra = {k: v for k, v in extra.items() if k not in bad}
    base.pop("raw", None)
    base["raw_text"] = exact_dumps(item)
    base["account_id"] = ""
    return UnsupportedEvent.model_validate(base)


def _storable(item: Any) -> bool:
    """Whether `jsonb` holds `item` as it is: no marked value, no unclean string, not too deep."""
    if has_marks(item) or _too_deep(item):
        return False
    try:
        return clean_json(item) is item  # nothing needed cleaning
    except ValueError:
        return False


def _too_deep(value: Any, depth: int = 0) -> bool:
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        return any(_too_deep(v, depth + 1) for v in children)
    return False


def _millis(value: object, *, seconds: bool = False) -> int | None:
    """A time as Meta writes it (number or digit string), as milliseconds: seconds where
    the shape says so, unless the value is plainly milliseconds already."""
    number = build.count(value)
    if number is None:
        return None
    if seconds and number < _MILLIS_FROM:
        return number * 1000
    return number


def _listed(value: object) -> list[object]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
