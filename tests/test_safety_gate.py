"""The safety gate: held, never dropped, replayable, exact under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ingest.app import create_app
from ingest.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import open_client
from tests.test_producer import post, text_message


async def set_kill_switch(backend: PostgresBackend, active: bool) -> None:
    await backend.call(
        "ingest_set_kill_switch", {"p_active": active, "p_reason": "test", "p_by": "pytest"}
    )


async def states(backend: PostgresBackend) -> dict[str, int]:
    rows = await backend.pool.fetch("select state, count(*) n from ingest_ledger group by state")
    return {r["state"]: r["n"] for r in rows}


async def test_kill_switch_holds_events_and_meta_still_gets_200(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    await set_kill_switch(backend, True)
    async for client in open_client(create_app(qstash_settings())):
        response = await post(client, text_message("m_held"))
        again = await post(client, text_message("m_held"))
    assert response.status_code == 200
    assert response.json()["held"] == 1
    assert again.json()["duplicate"] == 1
    assert qstash.requests == []
    row = await backend.pool.fetchrow("select state, reason, event from ingest_ledger")
    assert row is not None
    assert (row["state"], row["reason"]) == ("held", "kill_switch")
    assert row["event"]["mid"] == "m_held"  # kept for replay


async def test_replay_after_switch_off_publishes_each_held_event_once(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    await set_kill_switch(backend, True)
    app = create_app(qstash_settings())
    async for client in open_client(app):
        for n in range(3):
            await post(client, text_message(f"m_{n}"))
    await set_kill_switch(backend, False)
    producer = _producer(qstash_settings(), backend)
    first = await producer.replay()
    second = await producer.replay()
    assert (first.published, second.published) == (3, 0)
    assert len(qstash.messages) == 3
    assert await states(backend) == {"published": 3}


async def test_replay_is_refused_while_the_switch_is_on(
    qstash_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    from storage import DataRejected

    await set_kill_switch(backend, True)
    with pytest.raises(DataRejected, match="kill switch"):
        await _producer(qstash_settings(), backend).replay()


async def test_breaker_trips_exactly_at_the_threshold_under_concurrency(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    app = create_app(qstash_settings(BREAKER_MAX_EVENTS="10"))
    bodies = [text_message(f"m_{n:02d}", sender=str(500 + n)) for n in range(30)]
    async for client in open_client(app):
        answers = await asyncio.gather(*(post(client, body) for body in bodies))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["published"] for a in answers) == 10
    assert sum(a.json()["held"] for a in answers) == 20
    assert len(qstash.messages) == 10
    safety = await backend.pool.fetchrow("select kill_switch, changed_by, reason from safety_state")
    assert safety is not None
    assert (safety["kill_switch"], safety["changed_by"]) == (True, "breaker")
    reasons = await backend.pool.fetch(
        "select reason, count(*) n from ingest_ledger where state = 'held' group by reason"
    )
    assert {r["reason"]: r["n"] for r in reasons} == {"breaker": 1, "kill_switch": 19}


async def test_switching_off_after_a_trip_restarts_the_breaker_window(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    app = create_app(qstash_settings(BREAKER_MAX_EVENTS="2"))
    async for client in open_client(app):
        for n in range(3):
            await post(client, text_message(f"a_{n}", sender=str(900 + n)))
        await set_kill_switch(backend, False)
        response = await post(client, text_message("b_0", sender="999"))
    assert response.json()["published"] == 1


async def test_per_sender_limit_holds_only_that_sender(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    app = create_app(qstash_settings(SENDER_HOURLY_LIMIT="3"))
    async for client in open_client(app):
        loud = [await post(client, text_message(f"loud_{n}", sender="111")) for n in range(5)]
        quiet = await post(client, text_message("quiet_0", sender="222"))
    assert [a.json()["published"] for a in loud] == [1, 1, 1, 0, 0]
    assert [a.json()["held"] for a in loud] == [0, 0, 0, 1, 1]
    assert quiet.json()["published"] == 1
    held = await backend.pool.fetch(
        "select sender_id, reason from ingest_ledger where state='held'"
    )
    assert {(r["sender_id"], r["reason"]) for r in held} == {("111", "sender_hourly_limit")}


async def test_daily_sender_limit(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    app = create_app(qstash_settings(SENDER_HOURLY_LIMIT="100", SENDER_DAILY_LIMIT="2"))
    async for client in open_client(app):
        answers = [await post(client, text_message(f"d_{n}", sender="333")) for n in range(3)]
    assert [a.json()["held"] for a in answers] == [0, 0, 1]


def _producer(settings: Settings, backend: PostgresBackend) -> Any:
    from consumers.processing import Processor
    from ingest.app import make_publisher
    from ingest.producer import Producer

    assert settings.public_base_url is not None
    return Producer(
        backend,
        settings.safety,
        publisher=make_publisher(settings, settings.public_base_url),
        direct=Processor(backend).process,
    )


async def test_status_reports_the_gate(client: httpx.AsyncClient, backend: PostgresBackend) -> None:
    await set_kill_switch(backend, True)
    await post(client, text_message("m_s"))
    status = await backend.call("ingest_status", {})
    assert status["kill_switch"] is True
    assert status["held"] == 1
    assert status["reason"] == "test"
