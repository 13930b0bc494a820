"""Turns through Supabase's REST `rpc` (real PostgREST): the same SQL functions, the same
answers, so the Supabase path and the Postgres path cannot drift."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from storage.supabase import SupabaseBackend
from tests.supabase_stack import SERVICE_ROLE_KEY, SupabaseStack
from tests.turn_kit import FAST, message_event

LIMITS = {
    "daily_messages": 10_000, "breaker_max_events": 1_000, "breaker_window_seconds": 60,
    "sender_hourly_limit": 60, "sender_daily_limit": 300,
}  # fmt: skip


@pytest.fixture
async def rpc(supabase: SupabaseStack) -> AsyncIterator[SupabaseBackend]:
    backend = SupabaseBackend(supabase.url, SERVICE_ROLE_KEY)
    await backend.open()
    yield backend
    await backend.close()


async def test_a_turn_is_kept_claimed_settled_and_replayed_through_postgrest(
    rpc: SupabaseBackend, supabase: SupabaseStack
) -> None:
    await rpc.call("ingest_turn_configure", {"p_settings": FAST})
    for n in range(2):
        await rpc.call("ig_apply_event", {"p_event": message_event(f"s{n}", "c1")})
    await asyncio.sleep(0.35)
    claim = await rpc.call(
        "ingest_turn_claim",
        {"p_limit": 10, "p_lease_seconds": 30, "p_limits": LIMITS, "p_qstash": True},
    )
    (turn,) = claim["turns"]
    assert turn["route"] == "qstash" and [m["mid"] for m in turn["body"]["messages"]] == [
        "s0",
        "s1",
    ]
    settled = await rpc.call(
        "ingest_turn_settle",
        {"p_token": claim["token"], "p_turn_ids": [turn["turn_id"]], "p_states": ["published"],
         "p_message_ids": ["msg_1"], "p_destinations": ["https://bot.example/t"],
         "p_reasons": [None], "p_delays": [None]},
    )  # fmt: skip
    assert settled == {"settled": 1}
    failed = await rpc.call(
        "ingest_turn_failed",
        {"p_message_id": "msg_1", "p_url": "https://bot.example/t", "p_status": 500},
    )
    assert failed == {"turn_id": turn["turn_id"], "outcome": "failed"}
    assert await rpc.call("ingest_turn_replay", {"p_states": ["failed"], "p_dry_run": False}) == {
        "replayed": 1
    }
    listing = await rpc.call(
        "ingest_turns", {"p_state": None, "p_account": None, "p_customer": "c1", "p_limit": 5}
    )
    assert listing["counts"] == {"pending": 1}
    assert await supabase.fetchval("select replayed from ig_turns") is True
