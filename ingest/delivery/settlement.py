"""What one relay pass works on: the rows a claim hands it, and how each one ends.

`ingest_relay_claim` returns the rows to store directly (`Direct`, each with the gate's
reason) and the rows to publish as ready `/v2/batch` bodies (`Batch`); the pass settles
each (`Settlement`) and reports what it did (`PassResult`) to the metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Direct:
    """A claimed row to store in-process, and why it is not published."""

    dedup_id: str
    reason: str | None
    event: dict[str, Any] | None
    attempts: int
    age_seconds: float


@dataclass(frozen=True, slots=True)
class Batch:
    """Claimed rows to publish: a ready `/v2/batch` body and its dedup IDs, in order."""

    ids: list[str]
    ages: list[float]
    body: str


@dataclass
class PassResult:
    """What one relay pass did: counts by final state, gate refusals, and the lag of each
    row delivered (published or stored directly; `relay.DELIVERED`)."""

    claimed: int = 0
    settled: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    lags: list[float] = field(default_factory=list)
    publish_seconds: list[float] = field(default_factory=list)

    def add(self, other: PassResult) -> None:
        self.claimed += other.claimed
        self.settled.update(other.settled)
        self.refusals.update(other.refusals)


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one claimed row ends this pass (`ingest_relay_settle`)."""

    dedup_id: str
    state: str
    message_id: str | None = None
    deduplicated: bool | None = None
    reason: str | None = None
    delay_seconds: float | None = None
