"""Turns under erasure (`forget`, Meta's data-deletion callback), retention, `ingestctl
turns`, and the metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ingest.config.settings import Retention
from ingest.lifecycle.retention import prune
from ingest.turns.metrics import TurnMetrics
from ingest.turns.settlement import TurnPass
from storage.postgres import PostgresBackend
from tests.privacy_kit import ingestctl
from tests.turn_kit import ACCOUNT, FAST, message_event


@pytest.fixture
async def turns_on(backend: PostgresBackend) -> PostgresBackend:
    await backend.call("ingest_turn_configure", {"p_settings": FAST})
    return backend


async def store(backend: PostgresBackend, event: dict[str, Any]) -> None:
    await backend.call("ig_apply_event", {"p_event": event})


async def customers(backend: PostgresBackend) -> list[str]:
    rows = await backend.pool.fetch("select distinct customer_id from ig_turns order by 1")
    return [r["customer_id"] for r in rows]


async def test_forgetting_a_customer_erases_their_turns_and_no_other(
    turns_on: PostgresBackend,
) -> None:
    for customer in ("c1", "c2"):
        await store(turns_on, message_event(f"{customer}_m", customer))
    await turns_on.call("ig_forget", {"p_igsid": "c1", "p_account": None, "p_dry_run": False})
    assert await customers(turns_on) == ["c2"]
    assert await turns_on.pool.fetchval(
        "select count(*) from ig_turn_messages where mid like 'c1%'") == 0  # fmt: skip


async def test_erasing_an_account_erases_every_turn_of_it(turns_on: PostgresBackend) -> None:
    postback = {
        "v": 2, "kind": "postback", "dedup_id": "ig_postback_p", "account_id": ACCOUNT,
        "sender_id": "c3", "recipient_id": ACCOUNT, "title": "Buy", "raw": {},
    }  # fmt: skip
    await store(turns_on, postback)
    await store(turns_on, message_event("c1_m", "c1"))
    await turns_on.call("ig_forget_account", {"p_account": ACCOUNT})
    assert await customers(turns_on) == []
    assert await turns_on.pool.fetchval("select count(*) from ig_turn_messages") == 0


async def test_retention_prunes_handed_off_turns_and_keeps_failed_and_limited_ones(
    turns_on: PostgresBackend,
) -> None:
    for n, state in enumerate(("delivered", "published", "failed", "limited")):
        await store(turns_on, message_event(f"m{n}", f"c{n}"))
        await turns_on.pool.execute(
            "update ig_turns set state = $1, seq = 1, closed_at = now() - interval '40 days'"
            " where customer_id = $2",
            state,
            f"c{n}",
        )
    removed = await prune(turns_on, Retention(ledger_days=30))
    assert removed["turns"] == 2
    rows = await turns_on.pool.fetch("select state from ig_turns order by state")
    assert [r["state"] for r in rows] == ["failed", "limited"]


async def test_ingestctl_turns_lists_by_state_without_message_text(
    turns_on: PostgresBackend, database_url: str
) -> None:
    await store(turns_on, message_event("m1", "c1", text="my secret address"))
    done = await asyncio.to_thread(ingestctl, database_url, "turns", "--state", "open", "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert listed["counts"] == {"open": 1}
    assert [(t["customer_id"], t["mids"]) for t in listed["turns"]] == [("c1", ["m1"])]
    assert "secret address" not in done.stdout
    human = await asyncio.to_thread(ingestctl, database_url, "turns")
    assert human.returncode == 0 and "turns: open 1" in human.stdout


def test_metrics_count_turns_by_outcome_messages_and_hand_off_latency() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics = TurnMetrics(registry)
    result = TurnPass(closed=2, claimed=2)
    result.settled.update({"delivered": 1, "published": 1})
    result.sizes.extend([3, 1])
    result.lags.extend([0.2, 0.4])
    metrics.observe_pass(result)
    text = generate_latest(registry).decode()
    assert 'ingest_turns_total{outcome="closed"} 2.0' in text
    assert 'ingest_turns_total{outcome="delivered"} 1.0' in text
    assert "ingest_turn_messages_sum 4.0" in text
    assert "ingest_turn_handoff_seconds_count 2.0" in text


async def test_ingestctl_replay_limited_counts_then_replays_limited_turns_only(
    turns_on: PostgresBackend, database_url: str
) -> None:
    for n, state in enumerate(("limited", "failed")):
        await store(turns_on, message_event(f"r{n}", f"c{n}"))
        await turns_on.pool.execute(
            "update ig_turns set state = $1, seq = 1, closed_at = now() where customer_id = $2",
            state,
            f"c{n}",
        )
    dry = await asyncio.to_thread(
        ingestctl, database_url, "replay", "--limited", "--dry-run", "--json"
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"would_replay": 0, "would_replay_turns": 1}
    done = await asyncio.to_thread(
        ingestctl, database_url, "replay", "--limited", "--no-wait", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"replayed": 0, "replayed_turns": 1}  # turns named
    rows = await turns_on.pool.fetch("select customer_id, state from ig_turns order by 1")
    assert [tuple(r) for r in rows] == [("c0", "pending"), ("c1", "failed")]
