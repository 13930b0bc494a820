"""Lookup by sender ID, `mid` or dedup ID: each event's path through the pipeline.

admitted → (replayed) → published / stored directly / held / failed / pending →
stored. The ledger says the first steps; whether an event is stored is read from the
consumer's own tables (ig_messages, ig_reactions, ig_events), so the consumer's hot
path writes nothing for the console. Which row stores an event follows from its
dedup ID (contracts.dedup): `ig_msg_<mid>`, `ig_edit_<mid>_<n>`, `ig_del_<mid>`,
`ig_react_<mid>_<sender>_…`; every other kind is kept in ig_events under its dedup ID.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.dedup import escape_part, unescape_part
from storage import Backend

MAX_QUERY = 200
ROWS = 50


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    done: bool
    at: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class EventPath:
    dedup_id: str
    kind: str
    sender_id: str | None
    state: str
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class Subject:
    """Where an event is stored: a message (and which edit), a reaction, or an event row."""

    table: str  # "message", "edit", "unsend", "reaction", "event"
    key: tuple[str, ...]


def subject(dedup_id: str) -> Subject:
    """Read the dedup ID back (its parts never contain `_`: `escape_part` maps it)."""
    parts = dedup_id.split("_")
    try:
        match parts[:2]:
            case ["ig", "msg"] if len(parts) == 3:
                return Subject("message", (unescape_part(parts[2]),))
            case ["ig", "edit"] if len(parts) == 4:
                return Subject("edit", (unescape_part(parts[2]), unescape_part(parts[3])))
            case ["ig", "del"] if len(parts) == 3:
                return Subject("unsend", (unescape_part(parts[2]),))
            case ["ig", "react"] if len(parts) >= 4:
                return Subject("reaction", (unescape_part(parts[2]), unescape_part(parts[3])))
    except (ValueError, IndexError):  # not an ID we wrote: look it up as an event
        pass
    return Subject("event", (dedup_id,))


# The kinds whose dedup ID is a prefix and one mid: the README writes them as
# `ig_msg_<mid>`, the ledger holds the mid escaped (`m_1` → `m-5F1`).
MID_PREFIXES = ("ig_msg_", "ig_del_")


def candidates(query: str) -> tuple[list[str], str]:
    """The dedup IDs a query may name exactly, and the needle that finds every other event
    about the same mid or sender. A query in the README's form (`ig_msg_m_sample_1`, the
    mid as Meta sent it) finds what the ledger holds under the escaped form."""
    ids = [query]
    subject = query
    for prefix in MID_PREFIXES:
        if query.startswith(prefix) and len(query) > len(prefix):
            subject = query[len(prefix) :]
            ids.append(prefix + escape_part(subject))
    escaped = escape_part(subject)
    ids += [f"ig_msg_{escaped}", f"ig_del_{escaped}"]
    return list(dict.fromkeys(ids)), f"_{escaped}"


async def lookup(backend: Backend, query: str) -> list[EventPath]:
    dedup_ids, needle = candidates(query)
    rows = await backend.call(
        "ingest_console_lookup",
        {"p_query": query, "p_dedup_ids": dedup_ids, "p_needle": needle, "p_limit": ROWS},
    )
    subjects = {row["dedup_id"]: subject(row["dedup_id"]) for row in rows}
    stored = await _stored(backend, list(subjects.values()))
    return [_path(row, stored(subjects[row["dedup_id"]])) for row in rows]


async def _stored(backend: Backend, subjects: list[Subject]) -> Callable[[Subject], bool]:
    """One call for every row's evidence; returns a predicate Subject → stored?"""
    mids = sorted({s.key[0] for s in subjects if s.table in ("message", "edit", "unsend")})
    reactions = sorted({s.key for s in subjects if s.table == "reaction"})
    event_ids = sorted({s.key[0] for s in subjects if s.table == "event"})
    found = await backend.call(
        "ingest_console_stored",
        {"p_mids": mids, "p_reactions": [list(k) for k in reactions], "p_event_ids": event_ids},
    )
    messages: dict[str, dict[str, Any]] = found["messages"]
    reacted = {tuple(pair) for pair in found["reactions"]}
    events = set(found["events"])

    def is_stored(s: Subject) -> bool:
        message = messages.get(s.key[0], {})
        if s.table == "message":
            return bool(message) and not message["placeholder"]
        if s.table == "edit":
            return bool(message) and s.key[1].isdigit() and message["edit_count"] >= int(s.key[1])
        if s.table == "unsend":
            return bool(message.get("deleted"))
        if s.table == "reaction":
            return s.key in reacted
        return s.key[0] in events

    return is_stored


def _path(row: dict[str, Any], stored: bool) -> EventPath:
    steps = [Step("admitted", True, row["admitted_at"])]
    if row["replayed_at"]:
        steps.append(Step("replayed", True, row["replayed_at"]))
    steps.append(_relay_step(row))
    if row["dead_letter"]:
        steps.append(Step("dead-lettered", True, detail="QStash gave up; see the DLQ"))
    delivered = row["state"] == "published" and stored  # QStash's delivery is what stored it
    steps.append(Step("stored", stored, detail="delivered by QStash" if delivered else None))
    return EventPath(row["dedup_id"], row["kind"], row["sender_id"], row["state"], tuple(steps))


def _relay_step(row: dict[str, Any]) -> Step:
    state, reason = row["state"], row["reason"]
    match state:
        case "published":
            return Step("published", True, row["published_at"], row["qstash_message_id"])
        case "direct":
            return Step("stored directly", True, row["settled_at"], reason)
        case "held":
            return Step("held", True, row["settled_at"], reason)
        case "failed":
            return Step("failed", True, row["settled_at"], reason)
        case "pending":
            return Step("pending", False, None, f"attempts {row['attempts']}")
    return Step(state, True, row["settled_at"], reason)  # a state added after this code
