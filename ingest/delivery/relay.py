"""The relay: owns every admitted event until it is settled.

Admission answers Meta as soon as the ledger commit is done; the relay does the
rest, in every instance (a task in the app's lifespan) or alone (`ingestctl relay`):

1. claim a batch of due `pending` rows (`ingest_relay_claim`: `FOR UPDATE SKIP
   LOCKED` plus a lease, so instances never share a row, and a row whose claimer
   died is claimed again once the lease ends). The safety gate decides, in the same
   call, what each row may cost: publish, store directly, or hold;
2. publish the allowed ones (one `/v2/batch` per up to 100, chunks in parallel) and
   mark each chunk as QStash answers it;
3. store the rest in-process (what the gate refused, what QStash refused or could
   not take within the budget);
4. settle: `published`, `direct`, `failed` (the contract or the database refuses it
   for good; replayable), or back to `pending` with a backoff when the database was
   unavailable. Nothing is deleted; nothing is left without an owner.

It wakes at once when this instance admits something, and sweeps on an interval
for rows other instances left behind or whose backoff ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from pydantic import ValidationError

from contracts import EVENT_ADAPTER, Event, describe_error
from ingest.config.settings import SafetyLimits
from ingest.delivery.publisher import Accepted, Outcome, Refused
from ingest.delivery.settlement import Batch, Direct, PassResult, Settlement
from storage import Backend, DataRejected, StorageError

log = structlog.get_logger(__name__)

DirectProcess = Callable[[Event], Awaitable[Any]]


class Publisher(Protocol):
    template: dict[str, str]
    """How the ledger writes each `/v2/batch` item around its dedup ID and event."""

    async def publish(self, body: str, count: int) -> list[Outcome]:
        """Send one batch of `count` messages; one outcome each, in order."""
        ...

    async def aclose(self) -> None:
        """Close its connections; the relay's owner calls it once the relay has stopped."""
        ...


# The ledger's reason for a bug's retry: operators read it; the log has the traceback.
UNEXPECTED = "retrying: an unexpected error (the service's log has it)"
# What the relay lag measures (`PassResult.lags`): the time to deliver, from admission or
# the replay. `held` is an operator's choice and `failed` a give-up, neither a delivery.
DELIVERED = frozenset({"published", "direct"})


@dataclass(frozen=True, slots=True)
class RelayConfig:
    lease_seconds: int = 30
    batch_size: int = 500
    sweep_seconds: float = 1.0
    # After a wake-up, wait this long so that one pass carries what arrives meanwhile:
    # under load a pass then costs its fixed round trips once per many events.
    linger_seconds: float = 0.02
    direct_concurrency: int = 4
    max_backoff_seconds: float = 300.0


class Relay:
    def __init__(
        self,
        backend: Backend,
        limits: SafetyLimits,
        *,
        publisher: Publisher | None,
        direct: DirectProcess,
        config: RelayConfig | None = None,
        on_pass: Callable[[PassResult], None] | None = None,
    ) -> None:
        self._backend = backend
        self._limits = limits.as_gate()
        self._publisher = publisher
        self._direct = direct
        self._config = config or RelayConfig(lease_seconds=limits.lease_seconds)
        self._on_pass = on_pass
        self._wakeup = asyncio.Event()
        self._stopping = False

    # --- running ---------------------------------------------------------------------

    def wake(self) -> None:
        """Something was admitted: run a pass now rather than at the next sweep."""
        self._wakeup.set()

    async def run(self) -> None:
        """Pass after pass until `stop()`; never raises (a failed pass is retried)."""
        pause = 0.0
        while not self._stopping:
            try:
                result = await self.run_pass()
                pause = 0.0
            except Exception as exc:
                if not isinstance(exc, StorageError):
                    log.exception("relay_pass_crashed")
                else:
                    log.warning("relay_pass_failed", error=str(exc)[:200])
                pause = min(max(pause * 2, 0.5), self._config.sweep_seconds * 5)
                await asyncio.sleep(pause)
                continue
            if result.claimed < self._config.batch_size:
                await self._idle()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=self._config.sweep_seconds)
        if self._wakeup.is_set() and not self._stopping:
            await asyncio.sleep(self._config.linger_seconds)
        self._wakeup.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def aclose(self) -> None:
        """Close the publisher's connections: after the last pass, by whoever built us."""
        if self._publisher is not None:
            await self._publisher.aclose()

    async def drain(self, *, deadline_seconds: float | None = None) -> PassResult:
        """Run passes until one claims nothing (or the deadline passes); return the totals."""
        started = time.monotonic()
        total = PassResult()
        while True:
            result = await self.run_pass()
            total.add(result)
            out_of_time = (
                deadline_seconds is not None and time.monotonic() - started > deadline_seconds
            )
            if result.claimed == 0 or out_of_time:
                return total

    # --- one pass ----------------------------------------------------------------------

    async def run_pass(self) -> PassResult:
        answer = await self._backend.call(
            "ingest_relay_claim",
            {
                "p_limit": self._config.batch_size,
                "p_lease_seconds": self._config.lease_seconds,
                "p_limits": self._limits,
                "p_template": self._publisher.template if self._publisher else None,
            },
        )
        held = answer["held"]
        direct = [Direct(**row) for row in answer["direct"]]
        batches = [Batch(**batch) for batch in answer["batches"]]
        result = PassResult(claimed=len(held) + len(direct) + sum(len(b.ids) for b in batches))
        if not result.claimed:
            return result
        if answer.get("tripped"):
            log.error("circuit_breaker_tripped", detail="QStash publishing stopped; see status")
        token: str = answer["token"]
        started = time.monotonic()
        for row in direct:
            result.refusals[row.reason or "direct"] += 1
        if held:  # settled by the claim itself
            result.refusals["kill_switch"] += len(held)
            result.settled["held"] += len(held)  # no lag: held is not delivered
        leftovers = await asyncio.gather(
            *(self._publish(batch, token, result, started) for batch in batches)
        )
        direct += [row for rows in leftovers for row in rows]
        await self._store_directly(direct, token, result, started)
        if self._on_pass is not None:
            self._on_pass(result)
        return result

    async def _publish(
        self, batch: Batch, token: str, result: PassResult, started: float
    ) -> list[Direct]:
        """Publish one batch and settle what QStash took; return the rest, each with the
        reason, to store directly (its event read back from the ledger)."""
        assert self._publisher is not None
        sent = time.monotonic()
        outcomes = await self._publisher.publish(batch.body, len(batch.ids))
        result.publish_seconds.append(time.monotonic() - sent)
        settled: list[Settlement] = []
        leftovers: dict[str, str] = {}
        for dedup_id, outcome in zip(batch.ids, outcomes, strict=True):
            if isinstance(outcome, Accepted):
                settled.append(
                    Settlement(
                        dedup_id,
                        "published",
                        message_id=outcome.message_id,
                        deduplicated=outcome.deduplicated,
                    )
                )
            else:
                refused = isinstance(outcome, Refused)
                leftovers[dedup_id] = "qstash_refused" if refused else "qstash_unavailable"
        ages = dict(zip(batch.ids, batch.ages, strict=True))
        await self._settle(token, settled, result, started, ages)
        if not leftovers:
            return []
        events = await self._backend.call(
            "ingest_relay_events", {"p_token": token, "p_dedup_ids": list(leftovers)}
        )
        return [
            Direct(
                row["dedup_id"],
                leftovers[row["dedup_id"]],
                row["event"],
                row["attempts"],
                ages[row["dedup_id"]],
            )
            for row in events
        ]

    async def _store_directly(
        self, rows: list[Direct], token: str, result: PassResult, started: float
    ) -> None:
        if not rows:
            return
        gate = asyncio.Semaphore(self._config.direct_concurrency)

        async def one(row: Direct) -> Settlement:
            async with gate:
                return await self._process(row)

        settled = await asyncio.gather(*(one(row) for row in rows))
        ages = {row.dedup_id: row.age_seconds for row in rows}
        await self._settle(token, list(settled), result, started, ages)

    async def _process(self, row: Direct) -> Settlement:
        try:
            event = EVENT_ADAPTER.validate_python(row.event)
            await self._direct(event)
        except ValidationError as exc:
            return Settlement(row.dedup_id, "failed", reason=describe_error(exc))
        except DataRejected as exc:
            return Settlement(row.dedup_id, "failed", reason=f"database refused: {exc}"[:300])
        except Exception as exc:  # unavailable, or a bug: try again later, never lose it
            if not isinstance(exc, StorageError):
                log.exception("direct_processing_crashed", dedup_id=row.dedup_id)
            delay = min(self._config.max_backoff_seconds, 2.0 ** min(row.attempts, 16))
            reason = f"retrying: {exc}"[:300] if isinstance(exc, StorageError) else UNEXPECTED
            return Settlement(row.dedup_id, "pending", reason=reason, delay_seconds=delay)
        return Settlement(row.dedup_id, "direct", reason=row.reason)

    async def _settle(
        self,
        token: str,
        settled: list[Settlement],
        result: PassResult,
        started: float,
        ages: dict[str, float],
    ) -> None:
        if not settled:
            return
        try:
            await self._backend.call(
                "ingest_relay_settle",
                {
                    "p_token": token,
                    "p_dedup_ids": [s.dedup_id for s in settled],
                    "p_states": [s.state for s in settled],
                    "p_message_ids": [s.message_id for s in settled],
                    "p_deduplicated": [s.deduplicated for s in settled],
                    "p_reasons": [s.reason for s in settled],
                    "p_delays": [s.delay_seconds for s in settled],
                },
            )
        except StorageError as exc:
            # The rows stay claimed until the lease ends, then any relay claims them again:
            # a re-publish reuses the dedup ID (QStash absorbs it), a re-store is idempotent.
            log.warning("relay_settle_failed", rows=len(settled), error=str(exc)[:200])
            return
        elapsed = time.monotonic() - started
        for s in settled:
            result.settled["retried" if s.state == "pending" else s.state] += 1
            if s.state in DELIVERED:
                result.lags.append(ages.get(s.dedup_id, 0.0) + elapsed)
            if s.state == "failed":
                log.error("event_failed", dedup_id=s.dedup_id, reason=s.reason)
