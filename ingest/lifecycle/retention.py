"""Retention: prune settled ledger rows and dead-letter bodies past their time.

One implementation for both doors: `ingestctl prune`, and (with `PRUNE_INTERVAL_SECONDS`)
a task in the service. Each batch is one short transaction (`ingest_prune`, `SKIP LOCKED`),
so admissions never wait on it. Held and failed rows are never pruned; tombstones are
kept; an erased event's dedup key goes with its ledger row, once past retention.
Handed-off turns (`ig_turn_prune`) go after the ledger's retention too.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import structlog

from ingest.config.settings import Retention
from storage import Backend, StorageError

BATCH = 5_000

log = structlog.get_logger(__name__)


async def prune(backend: Backend, retention: Retention, *, batch: int = BATCH) -> Counter[str]:
    """Prune until nothing is left past retention; the totals, by what was removed."""
    totals: Counter[str] = Counter()
    while True:
        removed = await backend.call(
            "ingest_prune",
            {
                "p_ledger_days": retention.ledger_days,
                "p_dead_letter_days": retention.dead_letter_days,
                "p_batch": batch,
            },
        )
        turns = await backend.call(  # handed-off turns, like settled ledger rows
            "ig_turn_prune", {"p_days": retention.ledger_days, "p_batch": batch}
        )
        removed = {**removed, **{k: v for k, v in turns.items() if v}}
        totals.update({k: int(v) for k, v in removed.items()})
        if not any(removed.values()):
            return totals
        await asyncio.sleep(0)  # let admissions and the relay run between batches


async def run(backend: Backend, retention: Retention) -> None:
    """Prune every `retention.interval_seconds`, for the service's lifetime."""
    while True:
        await asyncio.sleep(retention.interval_seconds)
        try:
            removed = await prune(backend, retention)
        except StorageError as exc:
            log.warning("prune_failed", error=str(exc)[:200])
            continue
        if removed:
            log.info("pruned", **removed)
