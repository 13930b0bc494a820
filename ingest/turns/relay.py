"""The turn relay: closes due turns and hands each one off exactly once.

It runs beside the events' relay wherever background work runs (`ingest.background`: the
web process by default, the worker with `RELAY_IN_WEB=false`), and on its own from
`ingestctl`. A pass is one `ingest_turn_claim` (close what is due, claim
pending turns under a lease, decide each route under the safety gate's lock), then the
hand-offs, then one `ingest_turn_settle`. A turn a crashed instance claimed is claimed
again once its lease ends; a re-publish reuses the turn id as deduplication ID within
QStash's window, and `webhook-id` is the turn id on every path, so the downstream
dedups whatever is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ingest.config.settings import SafetyLimits
from ingest.config.turns import TurnSettings
from ingest.delivery.publisher import Accepted
from ingest.turns.settlement import ClaimedTurn, TurnPass, TurnSettlement
from ingest.turns.transport import Delivered, DirectSender, TurnPublisher, encode
from storage import Backend, StorageError

log = structlog.get_logger(__name__)


async def configure_stores(backend: Backend, turns: TurnSettings | None) -> None:
    """Tell the stores (`ig_apply_event`) whether and how to keep turns. Every process does
    this at start-up, web or worker, so that a message stored before any turn relay runs
    already belongs to a turn (and, with `TURN_WEBHOOK_URL` unset, no store opens one).
    A database still starting is tried again by the relay's first pass, or the next start."""
    try:
        await backend.call(
            "ingest_turn_configure", {"p_settings": turns.as_sql() if turns else None}
        )
    except StorageError as exc:
        log.warning("turns_not_configured", error=type(exc).__name__)


@dataclass(frozen=True, slots=True)
class TurnRelayConfig:
    lease_seconds: int = 30
    batch_size: int = 50
    sweep_seconds: float = 1.0
    max_attempts: int = 8  # direct POSTs (1 s, 2 s, … ~2 min in all) before `failed`
    backoff_seconds: float = 1.0  # doubled per attempt
    max_backoff_seconds: float = 120.0
    concurrency: int = 8


class TurnRelay:
    def __init__(
        self,
        backend: Backend,
        turns: TurnSettings,
        limits: SafetyLimits,
        *,
        direct: DirectSender,
        publisher: TurnPublisher | None,
        config: TurnRelayConfig | None = None,
        on_pass: Callable[[TurnPass], None] | None = None,
    ) -> None:
        self._backend = backend
        self._turns = turns
        self._limits = limits.as_gate()
        self._direct = direct
        self._publisher = publisher
        self._config = config or TurnRelayConfig(
            lease_seconds=limits.lease_seconds,
            sweep_seconds=min(1.0, max(0.05, turns.quiet_seconds / 4)),
        )
        self._on_pass = on_pass
        self._stopping = False
        self._wakeup = asyncio.Event()

    async def configure(self) -> None:
        """Tell the stores the windows and limits (every instance writes the same)."""
        await self._backend.call("ingest_turn_configure", {"p_settings": self._turns.as_sql()})

    async def run(self) -> None:
        """Pass after pass until `stop()`; never raises."""
        configured = False
        pause = 0.0
        while not self._stopping:
            try:
                if not configured:
                    await self.configure()
                    configured = True
                result = await self.run_pass()
                pause = 0.0
            except Exception as exc:
                if not isinstance(exc, StorageError):
                    log.exception("turn_pass_crashed")
                pause = min(max(pause * 2, 0.5), 5.0)
                await asyncio.sleep(pause)
                continue
            if result.claimed < self._config.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._config.sweep_seconds)
                self._wakeup.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def drain(self) -> TurnPass:
        """Passes until one closes and claims nothing (`ingestctl`, tests)."""
        total = TurnPass()
        while True:
            result = await self.run_pass()
            total.closed += result.closed
            total.claimed += result.claimed
            total.settled.update(result.settled)
            if not result.closed and not result.claimed:
                return total

    async def run_pass(self) -> TurnPass:
        answer = await self._backend.call(
            "ingest_turn_claim",
            {
                "p_limit": self._config.batch_size,
                "p_lease_seconds": self._config.lease_seconds,
                "p_limits": self._limits,
                "p_qstash": self._publisher is not None,
            },
        )
        claimed = [ClaimedTurn(**row) for row in answer["turns"]]
        result = TurnPass(closed=answer["closed"], claimed=len(claimed))
        result.settled["held"] += sum(1 for turn in claimed if turn.route == "held")
        gate = asyncio.Semaphore(self._config.concurrency)

        async def one(turn: ClaimedTurn) -> TurnSettlement:
            async with gate:
                return await self._hand_off(turn)

        started = time.monotonic()
        settled = await asyncio.gather(*(one(t) for t in claimed if t.route != "held"))
        if settled:
            await self._settle(answer["token"], list(settled))
            elapsed = time.monotonic() - started
            ages = {turn.turn_id: turn for turn in claimed}
            for s in settled:
                result.settled["retried" if s.state == "pending" else s.state] += 1
                if s.state in ("published", "delivered"):
                    result.sizes.append(ages[s.turn_id].messages)
                    result.lags.append(ages[s.turn_id].age_seconds + elapsed)
                if s.state == "failed":
                    log.error("turn_failed", turn_id=s.turn_id, reason=s.reason)
        if self._on_pass is not None and (result.closed or result.claimed):
            self._on_pass(result)
        return result

    async def _hand_off(self, turn: ClaimedTurn) -> TurnSettlement:
        assert turn.body is not None
        if not turn.body.get("messages"):  # every message was unsent: nobody to answer
            return TurnSettlement(turn.turn_id, "delivered", reason="empty: all unsent")
        body = encode(turn.body)
        if turn.route == "qstash" and self._publisher is not None:
            outcome = await self._publisher.publish(turn.turn_id, body)
            if isinstance(outcome, Accepted):
                return TurnSettlement(
                    turn.turn_id,
                    "published",
                    message_id=outcome.message_id,
                    destination=self._publisher.destination,
                )
            # QStash refused or is unreachable: this pass delivers it directly instead
        attempt = await self._direct.send(turn.turn_id, body)
        if isinstance(attempt, Delivered):
            return TurnSettlement(turn.turn_id, "delivered", reason=turn.reason)
        if turn.attempts >= self._config.max_attempts:
            return TurnSettlement(turn.turn_id, "failed", reason=attempt.reason)
        delay = min(
            self._config.max_backoff_seconds,
            self._config.backoff_seconds * 2 ** (turn.attempts - 1),
        )
        return TurnSettlement(turn.turn_id, "pending", reason=attempt.reason, delay_seconds=delay)

    async def _settle(self, token: str, settled: list[TurnSettlement]) -> None:
        try:
            await self._backend.call(
                "ingest_turn_settle",
                {
                    "p_token": token,
                    "p_turn_ids": [s.turn_id for s in settled],
                    "p_states": [s.state for s in settled],
                    "p_message_ids": [s.message_id for s in settled],
                    "p_destinations": [s.destination for s in settled],
                    "p_reasons": [s.reason for s in settled],
                    "p_delays": [s.delay_seconds for s in settled],
                },
            )
        except StorageError as exc:
            # claimed until the lease ends, then claimed again: the downstream dedups by
            # webhook-id, QStash by the turn id
            log.warning("turn_settle_failed", turns=len(settled), error=str(exc)[:200])
