"""What the console shows, read through the `Backend` (so Postgres and Supabase alike).

Each read is one call of a SQL function (`20261202200000_console.sql`) and comes back
as frozen dataclasses the templates read. A read that fails because the database is
unavailable gives None: the page still renders and says so.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from ingest.ops import audit
from ingest.ops.replay import ReplayFilter
from storage import Backend, StorageError

T = TypeVar("T")
LAG_SAMPLE = 1000
PROBLEM_ROWS = 50
SPEND_DAYS = 30
AUDIT_ROWS = 20


async def optional(read: Awaitable[T]) -> T | None:
    """The read, or None while the database is unavailable."""
    try:
        return await read
    except StorageError:
        return None


@dataclass(frozen=True, slots=True)
class Lag:
    events: int
    p50: float | None
    p95: float | None
    max: float | None


@dataclass(frozen=True, slots=True)
class Pulse:
    """The state strip and the flow: `ingest_status` plus the relay's recent lag."""

    kill_switch: bool
    hold: bool
    reason: str | None
    changed_by: str | None
    changed_at: str | None
    breaker_tripped: bool
    breaker_tripped_at: str | None
    pending: int
    held: int
    failed: int
    oldest_pending_seconds: float | None
    qstash_messages_today: int
    budget: int
    lag: Lag
    deauthorized_accounts: int = 0  # businesses that disconnected the app (Meta's callback)

    @property
    def spend_share(self) -> float:
        return self.qstash_messages_today / self.budget if self.budget else 0.0


async def pulse(backend: Backend, budget: int) -> Pulse:
    data = await backend.call("ingest_console_pulse", {"p_sample": LAG_SAMPLE})
    fields = {name: data.get(name) for name in Pulse.__dataclass_fields__ if name in data}
    return Pulse(**{**fields, "budget": budget, "lag": Lag(**data["lag"])})


@dataclass(frozen=True, slots=True)
class ProblemGroup:
    state: str
    reason: str | None
    events: int
    replayable: int
    oldest: str
    newest: str


@dataclass(frozen=True, slots=True)
class ProblemRow:
    dedup_id: str
    kind: str
    sender_id: str | None
    state: str
    reason: str | None
    admitted_at: str
    settled_at: str | None
    attempts: int
    replayable: bool


@dataclass(frozen=True, slots=True)
class Problems:
    groups: list[ProblemGroup]
    rows: list[ProblemRow]


async def problems(backend: Backend, which: ReplayFilter) -> Problems:
    params = which.params(dry_run=True)
    data = await backend.call(
        "ingest_console_problems",
        {
            "p_states": params["p_states"],
            "p_reasons": params["p_reasons"],
            "p_since": params["p_since"],
            "p_limit": PROBLEM_ROWS,
        },
    )
    return Problems(
        groups=[ProblemGroup(**g) for g in data["groups"]],
        rows=[ProblemRow(**r) for r in data["rows"]],
    )


@dataclass(frozen=True, slots=True)
class SpendDay:
    day: str
    messages: int


async def spend(backend: Backend) -> list[SpendDay]:
    rows = await backend.call("ingest_console_spend", {"p_days": SPEND_DAYS})
    return [SpendDay(**row) for row in rows]


@dataclass(frozen=True, slots=True)
class Conversation:
    igsid: str
    name: str | None
    username: str | None
    last_seen_at: str
    messages_in: int
    messages_out: int
    last_text: str | None
    last_sent_at: str | None
    last_deleted: bool
    last_attachments: int


async def audit_trail(backend: Backend) -> list[audit.Entry]:
    return await audit.recent(backend, AUDIT_ROWS)
