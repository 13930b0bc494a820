"""Replay: return held or failed events to `pending`, for the relay to settle once more.

One statement (`ingest_replay`), so an interrupted replay leaves nothing half-done;
refused while the kill switch holds. The dry run counts what a replay would take:
`ingestctl replay --dry-run` prints it, the console shows it before the operator
confirms. Each replay marks its rows with its time, so its progress can be followed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.ops import audit
from storage import Backend, DataRejected

REPLAYABLE = ("held", "failed")


class ReplayRefused(Exception):
    """The database refused the replay (the kill switch holds); the message says why."""


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which events: by state, admitted since, reason, or explicit dedup IDs (all ANDed)."""

    states: tuple[str, ...] = ("held",)
    since: datetime | None = None
    reasons: tuple[str, ...] = ()
    dedup_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.states or not set(self.states) <= set(REPLAYABLE):
            raise ValueError(f"replay takes states among {', '.join(REPLAYABLE)}")
        if self.since is not None and self.since.tzinfo is None:
            object.__setattr__(self, "since", self.since.replace(tzinfo=UTC))

    def params(self, *, dry_run: bool) -> dict[str, Any]:
        """The arguments of `ingest_replay`."""
        return {
            "p_states": list(self.states),
            "p_since": self.since.isoformat() if self.since else "-infinity",
            "p_reasons": list(self.reasons) or None,
            "p_dedup_ids": list(self.dedup_ids) or None,
            "p_dry_run": dry_run,
        }

    def describe(self) -> dict[str, Any]:
        """What the audit trail keeps: the filter's set parts, and how many events were
        picked by hand but not which (a dedup ID carries a customer's IDs, and the audit
        trail outlives the events it mentions)."""
        described: dict[str, Any] = {"states": list(self.states)}
        if self.since is not None:
            described["since"] = self.since.isoformat()
        if self.reasons:
            described["reasons"] = list(self.reasons)
        if self.dedup_ids:
            described["selected"] = len(self.dedup_ids)
        return described


@dataclass(frozen=True, slots=True)
class Replayed:
    count: int
    at: str | None
    """The replay's time in the database: the key of `progress`."""


@dataclass(frozen=True, slots=True)
class Progress:
    replayed: int
    pending: int
    settled: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.pending == 0


async def count(backend: Backend, which: ReplayFilter) -> int:
    """The dry run: how many events a replay with this filter would return to pending."""
    answer = await backend.call("ingest_replay", which.params(dry_run=True))
    return int(answer["would_replay"])


# The database's own words when it refuses (`ingest_replay`), said before anyone confirms.
HOLDING = "the kill switch is holding events; deactivate it before replaying"


async def refusal(backend: Backend) -> str | None:
    """Why a replay would be refused now, or None: the preview says it up front, so an
    operator never confirms a count only to be told no."""
    status = await backend.call("ingest_status", {})
    return HOLDING if status.get("hold") else None


async def replay(backend: Backend, actor: audit.Actor, which: ReplayFilter) -> Replayed:
    detail = which.describe()
    try:
        answer = await backend.call("ingest_replay", which.params(dry_run=False))
    except DataRejected as exc:
        await audit.record(backend, actor, "replay", detail, outcome=f"refused: {exc}"[:300])
        raise ReplayRefused(str(exc)) from exc
    done = Replayed(int(answer["replayed"]), answer.get("replayed_at"))
    await audit.record(backend, actor, "replay", {**detail, "replayed": done.count})
    return done


async def progress(backend: Backend, replayed_at: str) -> Progress:
    """How far the relay has got with one replay: still pending, and settled by state."""
    answer = await backend.call("ingest_replay_progress", {"p_replayed_at": replayed_at})
    return Progress(
        replayed=int(answer["replayed"]),
        pending=int(answer["pending"]),
        settled={state: int(n) for state, n in answer["settled"].items()},
    )
