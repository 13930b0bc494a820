"""Admission: the ledger commit that is Meta's 200.

Every event of a delivery is recorded in `ingest_ledger` as `pending` by one
set-based SQL call (`ingest_admit`), group-committed with the other deliveries
arriving meanwhile; no lock is taken, so admissions never wait for each other or
for QStash. From then on the relay owns the event. A duplicate (the ledger
already holds its dedup ID, however old) costs nothing more: no relay work, no
QStash message.

If the database refuses one item, `ingest_admit` records it as `failed` (raw kept
as text, reason given) and admits the others; if even that is impossible, only
the delivery holding that item is refused (503), never the others sharing the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from pydantic_core import PydanticSerializationError

from contracts import Event
from ingest.delivery.acceptance import Acceptance, NotAccepted
from ingest.delivery.coalesce import Coalescer
from storage import Backend, DataRejected, StorageError
from storage.jsonb import RawJson

log = structlog.get_logger(__name__)

Outcome = Literal["new", "duplicate", "failed", "unwritable"]
MAX_EVENTS_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    """What one `ingest_admit` call said, by dedup ID."""

    new: frozenset[str]
    failed: frozenset[str]
    unwritable: frozenset[str]
    erased: frozenset[str] = frozenset()

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> AdmissionResult:
        return cls(
            new=frozenset(answer.get("new") or ()),
            failed=frozenset(answer.get("failed") or ()),
            unwritable=frozenset(answer.get("unwritable") or ()),
            erased=frozenset(answer.get("erased") or ()),
        )

    def outcomes(self, dedup_ids: Sequence[str]) -> list[Outcome]:
        """Per event, in order. An ID twice in one call is new once, then a duplicate. An
        event of an erased person is recorded (its key only) and counts as a duplicate:
        there is nothing more to do with it."""
        seen: set[str] = set()
        outcomes: list[Outcome] = []
        for dedup_id in dedup_ids:
            first = dedup_id not in seen
            seen.add(dedup_id)
            if dedup_id in self.unwritable:
                outcomes.append("unwritable")
            elif dedup_id in self.failed and first:
                outcomes.append("failed")
            elif dedup_id in self.new and first:
                outcomes.append("new")
            else:
                outcomes.append("duplicate")
        return outcomes


class Admission:
    """Implements `ingest.delivery.acceptance.EventSink` for the webhook and the internal route."""

    def __init__(
        self,
        backend: Backend,
        *,
        on_new: Callable[[], None] | None = None,
        on_accepted: Callable[[Acceptance], None] | None = None,
    ) -> None:
        self._backend = backend
        self._on_new = on_new
        self._on_accepted = on_accepted
        self._calls: Coalescer[tuple[str, str], Outcome] = Coalescer(
            self._admit, max_items=MAX_EVENTS_PER_CALL, isolate=_caused_by_the_data
        )

    async def accept(self, events: Sequence[Event]) -> Acceptance:
        if not events:
            return Acceptance()
        try:
            items = [(e.dedup_id, e.model_dump_json()) for e in events]
        except PydanticSerializationError as exc:  # text JSON cannot carry (a lone surrogate)
            raise NotAccepted(f"an event cannot be serialised: {exc}"[:300]) from exc
        try:
            outcomes = await self._calls.submit(items)
        except StorageError as exc:
            raise NotAccepted(f"ledger unavailable: {exc}") from exc
        if "unwritable" in outcomes:
            raise NotAccepted("the ledger refused to record an event of this delivery")
        acceptance = Acceptance(
            new=outcomes.count("new"),
            duplicate=outcomes.count("duplicate"),
            failed=outcomes.count("failed"),
        )
        if acceptance.failed:
            log.error("admission_recorded_failed_events", events=acceptance.failed)
        if acceptance.new and self._on_new is not None:
            self._on_new()
        if self._on_accepted is not None:
            self._on_accepted(acceptance)
        return acceptance

    async def _admit(self, items: list[tuple[str, str]]) -> list[Outcome]:
        events = RawJson("[" + ",".join(text for _, text in items) + "]")
        answer = await self._backend.call("ingest_admit", {"p_events": events})
        result = AdmissionResult.from_answer(answer)
        return result.outcomes([dedup_id for dedup_id, _ in items])


# SQLSTATE classes that say the database itself is in trouble (connection, resources,
# operator action, system, a lost race): every delivery of the call shares that fate.
_SHARED_TROUBLE = frozenset({"08", "40", "53", "57", "58"})


def _caused_by_the_data(exc: Exception) -> bool:
    """A refusal of the call's data, not an outage: retried per delivery, so only the
    delivery at fault is refused."""
    if isinstance(exc, DataRejected):
        return True
    if not isinstance(exc, StorageError) or exc.sqlstate is None:
        return False
    return exc.sqlstate[:2] not in _SHARED_TROUBLE
