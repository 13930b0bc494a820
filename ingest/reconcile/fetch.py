"""One message from the Graph API: which fields to ask for, how to ask, how to read it.

Shared by the walk (`ingest.reconcile.walk`) and the missing-message fetch
(`ingest.reconcile.missing`); `Tally` counts what either saw and did, by reason.
"""

from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from contracts import MessageEvent
from contracts.graph import GraphApiError
from ingest.graph.client import GraphClient, object_path
from ingest.graph.messages import NoCustomer, message_event

log = structlog.get_logger(__name__)

_ATTACHMENTS = "attachments{id,name,mime_type,file_url,image_data,video_data}"
# Richest first; an "unknown field" error moves one step down for the rest of the walk.
FIELD_SETS = (
    f"id,created_time,from,to,message,{_ATTACHMENTS},shares{{link,name}},story,reply_to,"
    "is_unsupported",
    f"id,created_time,from,to,message,{_ATTACHMENTS},shares{{link,name}},story,is_unsupported",
    "id,created_time,from,to,message,attachments,shares{link},story,is_unsupported",
)
JsonObject = dict[str, Any]


@dataclass
class Tally:
    """What a walk saw and did; `errors` by Graph code, or by reason (`network`,
    `invalid_answer`, `invalid_message`, `invalid_id`, `no_customer`, `empty_pages`, …).
    `skipped_20_cap` is a lower bound: only the page where the cap shows is counted."""

    conversations: int = 0
    messages_seen: int = 0
    recovered: int = 0
    already_stored: int = 0
    skipped_20_cap: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        for name in ("conversations", "messages_seen", "recovered", "already_stored",
                     "skipped_20_cap", "failed"):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)


class FieldLadder:
    """The field set asked for: the richest, until Meta says a field is unknown."""

    def __init__(self) -> None:
        self._step = 0

    @property
    def current(self) -> str:
        return FIELD_SETS[self._step]

    def plainer(self) -> bool:
        """One step plainer; False when there is none left."""
        if self._step + 1 >= len(FIELD_SETS):
            return False
        self._step += 1
        log.info("reconcile_fields_reduced", fields=self.current)
        return True


async def fetch_message(
    client: GraphClient, mid: str, tally: Tally, fields: FieldLadder
) -> JsonObject | None:
    """`GET /{message-id}`: the message, or None when Meta will not give it: beyond the
    20-message cap or deleted (`skipped_20_cap`), or an error (counted by code) after
    up to three tries of a temporary one."""
    path = object_path(mid)
    if path is None:  # `.` or `..`: not an id we can ask for
        tally.errors["invalid_id"] += 1
        return None
    for attempt in range(4):
        try:
            return await client.get(path, {"fields": fields.current})
        except GraphApiError as exc:
            if exc.message_unavailable:
                tally.skipped_20_cap += 1
                return None
            if exc.unknown_field and fields.plainer():
                continue
            if not exc.temporary or attempt == 2:
                tally.errors[exc.label] += 1
                return None
    return None


def read_message(item: JsonObject, account_id: str, tally: Tally) -> MessageEvent | None:
    """A Graph message as an event, or None, counted: `no_customer` (erasure could not
    recognise it, so it is not admitted) or `invalid_message` (no event can hold it, or
    an odd value nobody foresaw: this message only)."""
    try:
        return message_event(item, account_id)
    except NoCustomer:
        tally.errors["no_customer"] += 1
    except (ValidationError, ValueError):
        tally.errors["invalid_message"] += 1
    except Exception as exc:
        tally.errors["invalid_message"] += 1
        log.warning("reconcile_message_unreadable", error=type(exc).__name__,
                    where=crash_site(exc))  # fmt: skip
    return None


def crash_site(exc: BaseException) -> str:
    """Where `exc` was raised (`file.py:line`), for a log line: the exception's own text
    may quote a URL, and a Graph URL holds the token."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
