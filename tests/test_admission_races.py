"""Concurrent admissions of the same events (two instances, Meta's retries) on one ledger.

Each instance's coalescer sends one `ingest_admit` per group commit, so two calls can
hold the same dedup IDs in different orders. They must only wait for each other, never
deadlock: a deadlock victim would be turned into `failed` rows or refused deliveries.
"""

from __future__ import annotations

import asyncio
import time

from contracts import EVENT_ADAPTER, Event
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.meta import text_message


def _events(round_: int, count: int) -> list[Event]:
    import json

    bodies = [text_message(f"m_race_{round_}_{n}", sender=str(40_000 + n)) for n in range(count)]
    return [e for body in bodies for e in parse_delivery(json.loads(body))]


def _payload(events: list[Event]) -> list[object]:
    return [EVENT_ADAPTER.dump_python(e, mode="json") for e in events]


async def test_the_same_events_admitted_at_once_in_opposite_orders_are_each_new_once(
    backend: PostgresBackend,
) -> None:
    started = time.monotonic()
    for round_ in range(30):
        events = _events(round_, 24)
        forward, backward = _payload(events), _payload(events[::-1])
        answers = await asyncio.gather(
            backend.call("ingest_admit", {"p_events": forward}),
            backend.call("ingest_admit", {"p_events": backward}),
        )
        new = [dedup_id for answer in answers for dedup_id in answer["new"]]
        assert sorted(new) == sorted(e.dedup_id for e in events)
        assert all(not answer.get("failed") and not answer.get("unwritable") for answer in answers)
    states = await backend.pool.fetch("select state, count(*) from ingest_ledger group by 1")
    assert {r["state"]: r["count"] for r in states} == {"pending": 30 * 24}
    assert time.monotonic() - started < 10  # no deadlock_timeout (1 s) paid along the way
