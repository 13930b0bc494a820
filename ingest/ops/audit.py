"""The audit trail: who did what to the pipeline, when, through which door, and how it ended.

Every action in `ingest.ops` records one row (`ingest_audit`) after it ran (or was
refused), so an operator reading the console sees what `ingestctl` did too.
"""

from __future__ import annotations

import getpass
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from storage import Backend

Door = Literal["cli", "console"]
DONE = "done"
MAX_NAME = 100


def has_control(text: str) -> bool:
    """Whether `text` holds a control or format character (a terminal escape, a bidi
    override): what the trail keeps must read as it was typed, wherever it is shown."""
    return any(unicodedata.category(c).startswith("C") for c in text)


def visible(text: str) -> str:
    """`text` with control and format characters written out (`\\n`, `\\x1b`, `\\u202e`):
    one line, nothing that moves a terminal's cursor, recolours it or reorders what
    follows, and no invisible box in a page. What a customer or an operator typed, shown."""
    out = []
    for char in text:
        if char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char in "\u200c\u200d":  # (non-)joiners: part of emoji and scripts, not tricks
            out.append(char)
        elif unicodedata.category(char).startswith("C") or char in "\u2028\u2029":
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Actor:
    """The operator acting, as they named themselves (`--by`, or the console's login)."""

    name: str
    door: Door

    def __post_init__(self) -> None:
        if not 1 <= len(self.name) <= MAX_NAME:
            raise ValueError(f"an operator's name has 1 to {MAX_NAME} characters")


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: str
    actor: str
    door: str
    action: str
    detail: Mapping[str, Any]
    outcome: str


def os_user() -> str:
    """Who runs `ingestctl` when `--by` does not say: the login name, else a plain word."""
    try:
        return getpass.getuser() or "ingestctl"
    except (KeyError, OSError):  # no passwd entry (a container running as a bare UID)
        return "ingestctl"


async def record(
    backend: Backend, actor: Actor, action: str, detail: Mapping[str, Any], outcome: str = DONE
) -> None:
    await backend.call(
        "ingest_audit_record",
        {
            "p_actor": actor.name,
            "p_door": actor.door,
            "p_action": action,
            "p_detail": dict(detail),
            "p_outcome": outcome,
        },
    )


async def recent(backend: Backend, limit: int = 20) -> list[Entry]:
    rows = await backend.call("ingest_audit_recent", {"p_limit": limit})
    return [Entry(**row) for row in rows]
