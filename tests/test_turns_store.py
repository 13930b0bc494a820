"""Turns in the database: opened and extended where the message is stored, closed by the
relay's claim. What opens a turn, what never does, and that a message belongs to exactly
one turn whatever order or how often it is stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from storage.postgres import PostgresBackend
from tests.turn_kit import ACCOUNT, FAST, message_event, now_ms

LIMITS = {
    "daily_messages": 10_000,
    "breaker_max_events": 1_000,
    "breaker_window_seconds": 60,
    "sender_hourly_limit": 60,
    "sender_daily_limit": 300,
}


@pytest.fixture
async def turns_on(backend: PostgresBackend) -> PostgresBackend:
    await backend.call("ingest_turn_configure", {"p_settings": FAST})
    return backend


async def store(backend: PostgresBackend, event: dict[str, Any]) -> str:
    answer = await backend.call("ig_apply_event", {"p_event": event})
    outcome: str = answer["outcome"]
    return outcome


async def turns(backend: PostgresBackend) -> list[dict[str, Any]]:
    rows = await backend.pool.fetch(
        "select t.turn_id, t.customer_id, t.state, t.seq, t.messages, t.closed_because,"
        " t.reason, array(select m.mid from ig_turn_messages m where m.turn_id = t.turn_id"
        " order by m.sent_at, m.arrived_at) as mids,"
        " array(select m.late from ig_turn_messages m where m.turn_id = t.turn_id"
        " order by m.sent_at, m.arrived_at) as late"
        " from ig_turns t order by t.opened_at"
    )
    return [dict(r) for r in rows]


async def close_due(backend: PostgresBackend, *, qstash: bool = False) -> dict[str, Any]:
    """One claim: closes what is due and claims what is pending."""
    answer: dict[str, Any] = await backend.call(
        "ingest_turn_claim",
        {"p_limit": 50, "p_lease_seconds": 30, "p_limits": LIMITS, "p_qstash": qstash},
    )
    return answer


async def test_a_burst_stored_out_of_order_is_one_turn_in_timestamp_order(
    turns_on: PostgresBackend,
) -> None:
    t0 = now_ms()
    for mid, offset in (("m3", 2), ("m1", 0), ("m2", 1)):
        assert await store(turns_on, message_event(mid, "c1", ts=t0 + offset)) == "stored"
    (turn,) = await turns(turns_on)
    assert turn["state"] == "open"
    assert turn["mids"] == ["m1", "m2", "m3"]
    assert turn["messages"] == 3
    assert turn["turn_id"] == "ig_turn_msg_m3"  # built from the message that opened it


async def test_echoes_self_messages_reads_reactions_and_tests_never_open_a_turn(
    turns_on: PostgresBackend,
) -> None:
    await store(turns_on, message_event("e1", "c1", direction="out"))
    await store(turns_on, message_event("s1", ACCOUNT, is_self=True))
    await store(turns_on, message_event("t1", "c1", is_test=True))
    base = {"v": 2, "account_id": ACCOUNT, "sender_id": "c1", "recipient_id": ACCOUNT, "raw": {}}
    await store(turns_on, {**base, "kind": "read", "dedup_id": "ig_read_x", "mid": "e1"})
    await store(
        turns_on,
        {**base, "kind": "reaction", "dedup_id": "ig_react_x", "mid": "e1", "emoji": "x"},
    )
    assert await turns(turns_on) == []


async def test_a_postback_opens_a_turn_and_a_redelivered_message_counts_once(
    turns_on: PostgresBackend,
) -> None:
    postback = {
        "v": 2, "kind": "postback", "dedup_id": "ig_postback_a", "account_id": ACCOUNT,
        "sender_id": "c1", "recipient_id": ACCOUNT, "timestamp": now_ms(), "mid": "pb1",
        "title": "Buy", "payload": "BUY", "raw": {},
    }  # fmt: skip
    await store(turns_on, postback)
    event = message_event("m1", "c1")
    assert await store(turns_on, event) == "stored"
    assert await store(turns_on, event) == "duplicate"
    (turn,) = await turns(turns_on)
    assert turn["messages"] == 2
    assert sorted(turn["mids"]) == ["m1", "pb1"]


async def test_an_unsent_message_leaves_its_open_turn_and_an_edit_replaces_its_text(
    turns_on: PostgresBackend,
) -> None:
    t0 = now_ms()
    await store(turns_on, message_event("m1", "c1", ts=t0, text="hi"))
    await store(turns_on, message_event("m2", "c1", ts=t0 + 1, text="red one?"))
    await store(turns_on, message_event("m3", "c1", ts=t0 + 2, text="oops"))
    base = {"v": 2, "account_id": ACCOUNT, "sender_id": "c1", "recipient_id": ACCOUNT, "raw": {}}
    await store(turns_on, {**base, "kind": "message_unsend", "dedup_id": "ig_del_m3", "mid": "m3"})
    await store(
        turns_on,
        {**base, "kind": "message_edit", "dedup_id": "ig_edit_m2_1", "mid": "m2",
         "text": "blue one?", "num_edit": 1, "timestamp": t0 + 5},
    )  # fmt: skip
    (turn,) = await turns(turns_on)
    assert turn["mids"] == ["m1", "m2"]
    assert turn["messages"] == 2
    body = await turns_on.call("ig_turn_body", {"p_turn_id": turn["turn_id"]})
    assert [m["text"] for m in body["messages"]] == ["hi", "blue one?"]


async def test_a_turn_whose_only_message_is_unsent_disappears(turns_on: PostgresBackend) -> None:
    await store(turns_on, message_event("m1", "c1"))
    base = {"v": 2, "account_id": ACCOUNT, "sender_id": "c1", "recipient_id": ACCOUNT, "raw": {}}
    await store(turns_on, {**base, "kind": "message_unsend", "dedup_id": "ig_del_m1", "mid": "m1"})
    assert await turns(turns_on) == []


async def test_a_message_older_than_the_24_hour_window_is_stored_but_opens_no_turn(
    turns_on: PostgresBackend,
) -> None:
    old = message_event("old", "c1", ts=now_ms(-25 * 3600), origin="reconcile")
    assert await store(turns_on, old) == "stored"
    assert await turns(turns_on) == []
    assert await turns_on.pool.fetchval("select count(*) from ig_messages") == 1


async def test_a_late_recovered_message_joins_the_next_turn_flagged_late(
    turns_on: PostgresBackend,
) -> None:
    t0 = now_ms(-60)
    await store(turns_on, message_event("m1", "c1", ts=t0))
    await store(turns_on, message_event("m3", "c1", ts=t0 + 2000))
    await asyncio.sleep(0.35)
    assert (await close_due(turns_on))["closed"] == 1
    late = message_event("m2", "c1", ts=t0 + 1000, origin="reconcile")
    await store(turns_on, late)
    first, second = await turns(turns_on)
    assert first["mids"] == ["m1", "m3"]
    assert second["state"] == "open"
    assert second["mids"] == ["m2"]
    assert second["late"] == [True]
    assert first["late"] == [False, False]


async def test_feature_off_costs_no_turn(backend: PostgresBackend) -> None:
    await store(backend, message_event("m1", "c1"))
    assert await turns(backend) == []
    await backend.call("ingest_turn_configure", {"p_settings": FAST})
    await backend.call("ingest_turn_configure", {"p_settings": None})
    await store(backend, message_event("m2", "c1"))
    assert await turns(backend) == []


async def test_max_messages_closes_the_turn_and_the_next_message_opens_another(
    backend: PostgresBackend,
) -> None:
    await backend.call("ingest_turn_configure", {"p_settings": {**FAST, "max_messages": 3}})
    t0 = now_ms()
    for n in range(5):
        await store(backend, message_event(f"m{n}", "c1", ts=t0 + n))
    first, second = await turns(backend)
    assert (first["state"], first["closed_because"], first["seq"]) == ("pending", "max_messages", 1)
    assert first["mids"] == ["m0", "m1", "m2"]
    assert (second["state"], second["mids"]) == ("open", ["m3", "m4"])


async def test_quiet_closes_after_the_window_and_seq_counts_the_conversation(
    turns_on: PostgresBackend,
) -> None:
    await store(turns_on, message_event("m1", "c1"))
    assert (await close_due(turns_on))["closed"] == 0  # still inside the quiet window
    await asyncio.sleep(0.35)
    claim = await close_due(turns_on)
    assert claim["closed"] == 1
    (handed,) = claim["turns"]
    assert handed["route"] == "direct" and handed["reason"] == "qstash_off"
    assert handed["body"]["seq"] == 1 and handed["body"]["closed_because"] == "quiet"
    await store(turns_on, message_event("m2", "c1"))
    await asyncio.sleep(0.35)
    assert (await close_due(turns_on))["turns"][0]["body"]["seq"] == 2


async def test_concurrent_stores_for_one_customer_give_each_message_exactly_one_turn(
    database_url: str, turns_on: PostgresBackend
) -> None:
    others = [PostgresBackend(database_url) for _ in range(4)]
    for b in others:
        await b.open()
    try:
        t0 = now_ms()

        async def writer(n: int, b: PostgresBackend) -> None:
            for k in range(15):
                await store(b, message_event(f"m{n}_{k}", "c1", ts=t0 + k * 10 + n))
                if k % 5 == 4:
                    await close_due(b)

        closer = asyncio.create_task(_keep_closing(turns_on))
        await asyncio.gather(*(writer(n, b) for n, b in enumerate(others)))
        closer.cancel()
    finally:
        for b in others:
            await b.close()
    all_turns = await turns(turns_on)
    mids = [mid for t in all_turns for mid in t["mids"]]
    assert sorted(mids) == sorted(f"m{n}_{k}" for n in range(4) for k in range(15))
    assert sum(1 for t in all_turns if t["state"] == "open") <= 1
    assert sum(t["messages"] for t in all_turns) == 60
    seqs = sorted(t["seq"] for t in all_turns if t["seq"] is not None)
    assert seqs == list(range(1, len(seqs) + 1))


async def _keep_closing(backend: PostgresBackend) -> None:
    while True:
        await backend.pool.execute("update ig_turns set due_at = now() where state = 'open'")
        await close_due(backend)
        await asyncio.sleep(0.005)


async def test_past_the_hourly_turn_limit_a_turn_is_limited_and_its_messages_stored(
    backend: PostgresBackend,
) -> None:
    await backend.call("ingest_turn_configure", {"p_settings": {**FAST, "hourly_limit": 2}})
    for n in range(3):
        await store(backend, message_event(f"m{n}", "c1"))
        await backend.pool.execute("update ig_turns set due_at = now() where state = 'open'")
        await close_due(backend)
    states = [(t["seq"], t["state"], t["reason"]) for t in await turns(backend)]
    assert states[2] == (3, "limited", "turn_hourly_limit")
    assert [s[1] for s in states[:2]] != ["limited", "limited"]
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 3


async def test_the_body_says_when_the_business_replied_after_the_turn_opened(
    turns_on: PostgresBackend,
) -> None:
    await store(turns_on, message_event("m1", "c1", text="price?"))
    turn_id = await turns_on.pool.fetchval("select turn_id from ig_turns")
    before = await turns_on.call("ig_turn_body", {"p_turn_id": turn_id})
    assert before["business_replied_after"] is None
    await store(turns_on, message_event("reply1", "c1", ts=now_ms(1), direction="out"))
    await store(turns_on, message_event("other", "c2", ts=now_ms(1), direction="out"))
    after = await turns_on.call("ig_turn_body", {"p_turn_id": turn_id})
    assert after["business_replied_after"] is not None
    assert [m["mid"] for m in after["messages"]] == ["m1"]  # the reply is not the customer's
    assert await turns_on.pool.fetchval("select count(*) from ig_turns") == 1


async def test_a_message_after_the_window_ended_starts_a_new_turn_before_the_relay_runs(
    turns_on: PostgresBackend,
) -> None:
    await store(turns_on, message_event("m1", "c1"))
    await asyncio.sleep(0.35)  # quiet window over; no relay has closed the turn yet
    await store(turns_on, message_event("m2", "c1"))
    first, second = await turns(turns_on)
    assert (first["mids"], first["state"], first["closed_because"]) == (["m1"], "pending", "quiet")
    assert (second["mids"], second["state"]) == (["m2"], "open")
