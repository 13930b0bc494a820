"""The safety gate caps what QStash may cost, never what is stored.

It lives in the relay's claim: kill switch, burst breaker, daily message limit and
per-sender limits decide whether an event may cost a QStash message; what they refuse
is stored directly (zero QStash messages), unless an operator chose to hold.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from storage import DataRejected
from storage.embedded import EmbeddedPostgres
from storage.migrations import MIGRATIONS_DIR, apply_migrations
from storage.postgres import PostgresBackend
from tests.conftest import forward_to_consumer, open_client, wait_settled
from tests.meta import fixture, post, text_message, wire_bytes


async def kill_switch(backend: PostgresBackend, active: bool, *, hold: bool = False) -> None:
    await backend.call(
        "ingest_set_kill_switch",
        {"p_active": active, "p_reason": "test", "p_by": "pytest", "p_hold": hold},
    )


async def reasons(backend: PostgresBackend, state: str = "direct") -> dict[str | None, int]:
    rows = await backend.pool.fetch(
        "select reason, count(*) n from ingest_ledger where state = $1 group by reason", state
    )
    return {r["reason"]: r["n"] for r in rows}


async def replay(backend: PostgresBackend, *states: str) -> int:
    answer = await backend.call("ingest_replay", {"p_states": list(states) or ["held"]})
    return int(answer["replayed"])


def echo(mid: str, customer: str) -> bytes:
    """The business's own reply, echoed back by Meta."""
    payload = fixture("echo")
    item = payload["entry"][0]["messaging"][0]
    item["message"]["mid"] = mid
    item["recipient"] = {"id": customer}
    return wire_bytes(payload)


# --- the kill switch ----------------------------------------------------------------------


async def test_kill_switch_stops_publishing_and_stores_everything_directly(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    await kill_switch(backend, True)
    async for client in open_client(create_app(qstash_settings())):
        response = await post(client, text_message("m_ks"))
        assert response.status_code == 200
        assert await wait_settled(backend) == {"direct": 1}
    assert qstash.requests == []
    assert await reasons(backend) == {"kill_switch": 1}
    assert await backend.pool.fetchval("select text from ig_messages") == "hi"


async def test_kill_switch_on_hold_stores_nothing_until_replay_after_deactivation(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    await kill_switch(backend, True, hold=True)
    async for client in open_client(create_app(qstash_settings())):
        for n in range(3):
            assert (await post(client, text_message(f"m_h{n}"))).status_code == 200
        again = await post(client, text_message("m_h0"))
        assert again.json()["duplicate"] == 1
        assert await wait_settled(backend) == {"held": 3}
        assert await backend.pool.fetchval("select count(*) from ig_messages") == 0
        row = await backend.pool.fetchrow("select reason, event from ingest_ledger limit 1")
        assert row is not None
        assert row["reason"] == "kill_switch"
        assert row["event"]["kind"] == "message"  # kept for replay

        with pytest.raises(DataRejected, match="holding"):
            await replay(backend)
        await kill_switch(backend, False)
        await asyncio.sleep(0.3)
        assert await wait_settled(backend) == {"held": 3}  # deactivating releases nothing
        assert await replay(backend) == 3
        assert await wait_settled(backend) == {"published": 3}
        assert await replay(backend) == 0
        assert await forward_to_consumer(client, qstash) == [200] * 3
    assert len(qstash.messages) == 3
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 3


# --- the burst breaker and the daily limit ---------------------------------------------------


async def test_breaker_trips_exactly_at_the_threshold_and_the_rest_is_stored_directly(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    app = create_app(qstash_settings(BREAKER_MAX_EVENTS="10"))
    bodies = [text_message(f"m_{n:02d}", sender=str(500 + n)) for n in range(30)]
    async for client in open_client(app):
        answers = await asyncio.gather(*(post(client, body) for body in bodies))
        assert all(a.status_code == 200 for a in answers)
        assert await wait_settled(backend) == {"published": 10, "direct": 20}
        assert await forward_to_consumer(client, qstash) == [200] * 10
    assert len(qstash.messages) == 10
    refused = await reasons(backend)
    assert refused.get("breaker", 0) >= 1
    assert set(refused) <= {"breaker", "kill_switch"}
    safety = await backend.pool.fetchrow("select kill_switch, hold, changed_by from safety_state")
    assert safety is not None
    assert (safety["kill_switch"], safety["hold"], safety["changed_by"]) == (True, False, "breaker")
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 30


async def test_switching_off_after_a_trip_restarts_the_breaker_window(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(qstash_settings(BREAKER_MAX_EVENTS="2"))):
        for n in range(3):
            await post(client, text_message(f"a_{n}", sender=str(900 + n)))
        assert await wait_settled(backend) == {"published": 2, "direct": 1}
        await kill_switch(backend, False)
        await post(client, text_message("b_0", sender="999"))
        assert await wait_settled(backend) == {"published": 3, "direct": 1}


async def test_daily_message_limit_stores_the_rest_directly_at_no_qstash_cost(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(qstash_settings(QSTASH_DAILY_MESSAGES="5"))):
        for n in range(8):
            await post(client, text_message(f"d_{n}", sender=str(700 + n)))
        assert await wait_settled(backend) == {"published": 5, "direct": 3}
    assert await reasons(backend) == {"daily_limit": 3}
    assert len(qstash.messages) == 5
    assert (await backend.call("ingest_status", {}))["qstash_messages_today"] == 5


async def test_the_daily_limit_holds_across_two_instances(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    """Spend is reserved in the ledger under one lock, so two instances together never
    publish more than the limit; the rest is stored directly at no QStash cost."""
    settings = qstash_settings(QSTASH_DAILY_MESSAGES="7")
    bodies = [text_message(f"two_{n}", sender=str(800 + n)) for n in range(20)]
    async for one in open_client(create_app(settings)):
        async for two in open_client(create_app(settings)):
            answers = await asyncio.gather(
                *(post(one if n % 2 else two, body) for n, body in enumerate(bodies))
            )
            assert all(a.status_code == 200 for a in answers)
            assert await wait_settled(backend) == {"published": 7, "direct": 13}
            assert await forward_to_consumer(one, qstash) == [200] * 7
    assert len(qstash.messages) == 7
    assert await reasons(backend) == {"daily_limit": 13}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 20


# --- per-sender limits -----------------------------------------------------------------------


async def test_per_sender_hourly_limit_refuses_only_that_sender(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(qstash_settings(SENDER_HOURLY_LIMIT="3"))):
        for n in range(5):
            await post(client, text_message(f"loud_{n}", sender="111"))
            await wait_settled(backend)
        await post(client, text_message("quiet_0", sender="222"))
        assert await wait_settled(backend) == {"published": 4, "direct": 2}
    rows = await backend.pool.fetch(
        "select sender_id, reason from ingest_ledger where state = 'direct'"
    )
    assert {(r["sender_id"], r["reason"]) for r in rows} == {("111", "sender_hourly_limit")}


async def test_per_sender_daily_limit(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    settings = qstash_settings(SENDER_HOURLY_LIMIT="100", SENDER_DAILY_LIMIT="2")
    async for client in open_client(create_app(settings)):
        for n in range(3):
            await post(client, text_message(f"d_{n}", sender="333"))
        assert await wait_settled(backend) == {"published": 2, "direct": 1}
    assert await reasons(backend) == {"sender_daily_limit": 1}


async def test_echoes_of_the_business_never_count_against_a_sender_limit(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    """35 replies to 35 customers come from one sender, the account: all published."""
    async for client in open_client(create_app(qstash_settings(SENDER_HOURLY_LIMIT="30"))):
        for n in range(35):
            assert (await post(client, echo(f"echo_{n}", str(40_000 + n)))).status_code == 200
        assert await wait_settled(backend) == {"published": 35}


async def test_an_ordinary_business_day_reaches_the_database_with_the_defaults(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    """40 customers write 3 messages each and get a reply: everything is published once
    and stored, nothing held, nothing refused."""
    bodies = [
        text_message(f"c{c}_{n}", sender=str(50_000 + c)) for c in range(40) for n in range(3)
    ]
    bodies += [echo(f"reply_{c}", str(50_000 + c)) for c in range(40)]
    async for client in open_client(create_app(qstash_settings())):
        answers = await asyncio.gather(*(post(client, body) for body in bodies))
        assert all(a.status_code == 200 for a in answers)
        assert await wait_settled(backend) == {"published": 160}
        assert await forward_to_consumer(client, qstash) == [200] * 160
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 160


# --- spend is counted once per event ------------------------------------------------------------


async def test_a_reclaimed_row_republishes_under_its_dedup_id_and_is_not_counted_again(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    """A relay that claimed and published but died before settling: after the lease the
    row is claimed again and re-published; QStash answers `deduplicated`; the day's
    spend stays at one message."""
    settings = qstash_settings(LEDGER_LEASE_SECONDS="1")
    async for client in open_client(create_app(settings)):
        await post(client, text_message("m_once"))
        assert await wait_settled(backend) == {"published": 1}
    # Rewind the row to "claimed and published by a relay that died before settling".
    await backend.pool.execute(
        "update ingest_ledger set state = 'pending', due_at = now(), qstash_message_id = null,"
        " event = $1::jsonb",
        json.loads(qstash.messages[0].body),
    )
    async for _ in open_client(create_app(settings)):
        assert await wait_settled(backend) == {"published": 1}
    assert len(qstash.messages) == 1
    assert len(qstash.requests) == 2
    assert await backend.pool.fetchval("select deduplicated from ingest_ledger") is True
    assert (await backend.call("ingest_status", {}))["qstash_messages_today"] == 1


async def test_replaying_an_event_qstash_gave_up_on_stores_it_directly(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    """A dead-lettered event already cost its one QStash message: replay stores it
    in-process instead of publishing it again."""
    await post(client, text_message("m_dlq"))
    await wait_settled(backend)
    await backend.pool.execute(
        "update ingest_ledger set state = 'failed', qstash_message_id = 'msg_1',"
        " event = (select to_jsonb(e) from (select 1) x, lateral (select"
        " 1 as v, 'message' as kind, '17841400000000001' as account_id, 'm_dlq' as mid,"
        " '{}'::jsonb as raw) e)"
    )
    assert await replay(backend, "failed") == 1
    assert await wait_settled(backend) == {"direct": 1}
    assert await reasons(backend) == {"already_published": 1}


# --- status and the upgrade ------------------------------------------------------------------


async def test_status_reports_the_gate_and_the_backlog(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await kill_switch(backend, True, hold=True)
    await post(client, text_message("m_s"))
    await wait_settled(backend)
    status = await backend.call("ingest_status", {})
    assert (status["kill_switch"], status["hold"], status["reason"]) == (True, True, "test")
    assert (status["held"], status["pending"], status["failed"]) == (1, 0, 0)
    assert status["oldest_pending_seconds"] is None


async def test_rows_held_before_the_upgrade_stay_held_and_replayable(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """A database on the previous schema, with a held event and the switch on: after the
    relay migration the row is still `held`, the switch still holds, and replay stores it."""
    url = pg_server.create_database("upgrade_held")
    try:
        before = tmp_path / "before"
        before.mkdir()
        for path in sorted(MIGRATIONS_DIR.glob("2026112*.sql")):
            (before / path.name).write_text(path.read_text())
        await apply_migrations(url, before)
        backend = PostgresBackend(url)
        await backend.open()
        try:
            event = json.loads(
                '{"v":1,"kind":"message","account_id":"1","sender_id":"2","mid":"m_old",'
                '"text":"held before","raw":{},"dedup_id":"ig_msg_m-5Fold"}'
            )
            await backend.pool.execute(
                "insert into ingest_ledger (dedup_id, kind, state, reason, event)"
                " values ('ig_msg_m-5Fold', 'message', 'held', 'kill_switch', $1::jsonb)",
                event,
            )
            await backend.pool.execute(
                "update safety_state set kill_switch = true, changed_by = 'alice'"
            )
            await apply_migrations(url)
            assert (await backend.call("ingest_status", {}))["hold"] is True
            await kill_switch(backend, False)
            assert await replay(backend) == 1
            from consumers.processing import Processor
            from ingest.config.settings import SafetyLimits
            from ingest.delivery.relay import Relay

            relay = Relay(
                backend, SafetyLimits(), publisher=None, direct=Processor(backend).process
            )
            done = await relay.drain()
            assert dict(done.settled) == {"direct": 1}
            assert await backend.pool.fetchval("select text from ig_messages") == "held before"
        finally:
            await backend.close()
    finally:
        pg_server.drop_database("upgrade_held")
