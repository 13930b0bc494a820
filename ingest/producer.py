"""The producer: admit durably, publish once, settle, and fall back rather than lose.

`accept` is what the webhook awaits before answering Meta:
1. admit: one SQL call records every event in the ledger and applies the safety
   gate → each event is new, duplicate or held;
2. publish the new ones to QStash (one batch call for several);
3. mark them published. Events QStash did not take are processed in-process
   (`direct`), and if that fails too their admission is released and
   `NotAccepted` is raised, so Meta redelivers and nothing is lost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import structlog

from contracts import EVENT_ADAPTER, Event, event_from_json, event_to_json
from ingest.acceptance import Acceptance, NotAccepted
from ingest.coalesce import Coalescer
from ingest.settings import SafetyLimits
from storage import Backend, StorageError

log = structlog.get_logger(__name__)

DirectProcess = Callable[[Event], Awaitable[Any]]


class Publisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> dict[str, str]:
        """Publish; return {dedup_id: QStash message id} for the events QStash accepted.

        Events missing from the answer were not accepted (the caller falls back).
        """
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Admission:
    new: list[Event]
    duplicate: int
    held: int


class Producer:
    def __init__(
        self,
        backend: Backend,
        limits: SafetyLimits,
        *,
        publisher: Publisher | None,
        direct: DirectProcess,
        on_accepted: Callable[[Acceptance], None] | None = None,
        on_publish_seconds: Callable[[float], None] | None = None,
    ) -> None:
        self._backend = backend
        self._limits = dataclasses.asdict(limits)
        self._publisher = publisher
        self._direct = direct
        self._on_accepted = on_accepted
        self._on_publish_seconds = on_publish_seconds
        # Concurrent deliveries share round trips: one admission, one mark for many.
        self._admissions: Coalescer[dict[str, Any], dict[str, Any]] = Coalescer(
            self._admit_all, max_items=500
        )
        self._marks: Coalescer[tuple[str, str], None] = Coalescer(
            self._mark_published, max_items=500
        )

    async def accept(self, events: Sequence[Event]) -> Acceptance:
        if not events:
            return Acceptance()
        admission = await self._admit(events)
        published = await self._publish(admission.new)
        direct = await self._process_directly(
            [e for e in admission.new if e.dedup_id not in published]
        )
        acceptance = Acceptance(
            published=len(published),
            direct=direct,
            duplicate=admission.duplicate,
            held=admission.held,
        )
        if self._on_accepted is not None:
            self._on_accepted(acceptance)
        return acceptance

    async def replay(
        self, *, states: Sequence[str] = ("held",), since: str = "-infinity", limit: int = 500
    ) -> Acceptance:
        """Send held (or failed) events again, once each: claimed in the ledger, then
        published or processed like a new admission. Refused while the kill switch is on."""
        claimed = await self._backend.call(
            "ingest_claim_for_replay",
            {
                "p_states": list(states),
                "p_since": since,
                "p_limit": limit,
                "p_lease_seconds": self._limits["lease_seconds"],
            },
        )
        events = [EVENT_ADAPTER.validate_python(item) for item in claimed]
        published = await self._publish(events)
        direct = await self._process_directly([e for e in events if e.dedup_id not in published])
        return Acceptance(published=len(published), direct=direct)

    async def _admit_all(self, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = await self._backend.call(
            "ingest_admit", {"p_events": payload, "p_limits": self._limits}
        )
        return results

    async def _mark_published(self, rows: list[tuple[str, str]]) -> list[None]:
        dedup_ids = [dedup_id for dedup_id, _ in rows]
        message_ids = [message_id for _, message_id in rows]
        await self._backend.call(
            "ingest_mark",
            {"p_dedup_ids": dedup_ids, "p_state": "published", "p_message_ids": message_ids},
        )
        return [None] * len(rows)

    async def _admit(self, events: Sequence[Event]) -> Admission:
        payload = [event.model_dump(mode="json") for event in events]
        try:
            results = await self._admissions.submit(payload)
        except StorageError as exc:
            raise NotAccepted(f"ledger unavailable: {exc}") from exc
        by_id = {event.dedup_id: event for event in events}
        new: dict[str, Event] = {}
        duplicate = held = 0
        for result in results:
            outcome = result["outcome"]
            if outcome == "new":
                new[result["dedup_id"]] = by_id[result["dedup_id"]]
            elif outcome == "held":
                held += 1
                log.warning("event_held", dedup_id=result["dedup_id"], reason=result["reason"])
            else:
                duplicate += 1
        return Admission(new=list(new.values()), duplicate=duplicate, held=held)

    async def _publish(self, events: list[Event]) -> dict[str, str]:
        if not events or self._publisher is None:
            return {}
        started = time.perf_counter()
        published = await self._publisher.publish(events)
        if self._on_publish_seconds is not None:
            self._on_publish_seconds(time.perf_counter() - started)
        if published:
            try:
                await self._marks.submit(list(published.items()))
            except StorageError as exc:
                # Rows stay `new` with a lease; a redelivery after it is re-published with the
                # same dedup ID, which QStash absorbs within its window.
                log.warning("ledger_mark_failed", state="published", error=str(exc))
        return published

    async def _process_directly(self, events: list[Event]) -> int:
        """Process in-process (QStash off or refusing); release and refuse on failure."""
        done: list[str] = []
        failed: list[str] = []
        for event in events:
            try:
                # The same contract round trip a QStash delivery makes.
                await self._direct(event_from_json(event_to_json(event)))
                done.append(event.dedup_id)
            except StorageError as exc:
                log.warning("direct_processing_failed", dedup_id=event.dedup_id, error=str(exc))
                failed.append(event.dedup_id)
        if done:
            await self._mark_direct(done)
        if failed:
            await self._release(failed)
            raise NotAccepted(f"{len(failed)} event(s) could neither be published nor processed")
        return len(done)

    async def _mark_direct(self, dedup_ids: list[str]) -> None:
        """Mark rows processed in-process. If this write fails the rows stay `new` with a
        lease, and a redelivery after the lease re-admits them: processing is idempotent,
        so nothing is stored twice."""
        try:
            await self._backend.call(
                "ingest_mark",
                {"p_dedup_ids": dedup_ids, "p_state": "direct", "p_message_ids": None},
            )
        except StorageError as exc:
            log.warning("ledger_mark_failed", state="direct", events=len(dedup_ids), error=str(exc))

    async def _release(self, dedup_ids: list[str]) -> None:
        try:
            await self._backend.call("ingest_release", {"p_dedup_ids": dedup_ids})
        except StorageError as exc:
            # The lease will expire and a redelivery re-admits them; nothing is lost.
            log.warning("ledger_release_failed", events=len(dedup_ids), error=str(exc))
