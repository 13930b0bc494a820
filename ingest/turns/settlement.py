"""What one turn pass works on and reports: a claimed turn, how it ends, and the totals."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ClaimedTurn:
    """A turn `ingest_turn_claim` handed this pass, with its route and body."""

    turn_id: str
    route: str  # qstash | direct | held
    reason: str | None
    attempts: int
    messages: int
    age_seconds: float
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class TurnSettlement:
    """How one claimed turn ends this pass (`ingest_turn_settle`)."""

    turn_id: str
    state: str  # published | delivered | failed | pending
    message_id: str | None = None
    destination: str | None = None
    reason: str | None = None
    delay_seconds: float | None = None


@dataclass
class TurnPass:
    closed: int = 0
    claimed: int = 0
    settled: Counter[str] = field(default_factory=Counter)
    sizes: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
