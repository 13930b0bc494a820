"""The producer against the QStash double and real PostgreSQL.

What Meta sees (status codes) and what QStash sees (requests and headers) are
both asserted: one inbound event costs at most one QStash message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import MessageEvent, event_from_json
from ingest.app import create_app
from ingest.parser import parse_delivery
from ingest.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, QSTASH_CURRENT_KEY, open_client
from tests.doubles.qstash_signer import delivery_headers
from tests.meta import signed_headers, wire_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
WEBHOOK = "/api/webhooks/instagram"
CONSUMER = "/api/qstash/instagram-ingestion"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def text_message(mid: str, sender: str = "1234567890123456", text: str = "hi") -> bytes:
    payload = fixture("text_message")
    item = payload["entry"][0]["messaging"][0]
    item["message"] = {"mid": mid, "text": text}
    item["sender"] = {"id": sender}
    return wire_bytes(payload)


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(WEBHOOK, content=body, headers=signed_headers(body))


@pytest.fixture
async def client(qstash_settings: Callable[..., Settings]) -> Any:
    async for c in open_client(create_app(qstash_settings())):
        yield c


async def forward_to_consumer(client: httpx.AsyncClient, qstash: Any) -> list[int]:
    """Play QStash: deliver every published message to the consumer, signed."""
    statuses = []
    for message in qstash.messages:
        path = message.destination.removeprefix(PUBLIC_BASE_URL)
        headers = delivery_headers(message.body, message.destination, QSTASH_CURRENT_KEY)
        response = await client.post(path, content=message.body, headers=headers)
        statuses.append(response.status_code)
    return statuses


# --- what QStash receives ---------------------------------------------------------------


async def test_one_message_is_one_publish_with_every_header(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    response = await post(client, wire_bytes(fixture("text_message")))
    assert response.status_code == 200
    assert response.json()["published"] == 1
    (request,) = qstash.requests
    (message,) = qstash.messages
    event = event_from_json(message.body)
    assert request.path == f"/v2/publish/{PUBLIC_BASE_URL}{CONSUMER}"
    assert request.headers["upstash-deduplication-id"] == f"ig_msg_{event.mid}"  # type: ignore[union-attr]
    assert request.headers["upstash-timeout"] == "30s"
    assert request.headers["upstash-retries"] == "3"
    assert request.headers["upstash-label"] == "instagram-messaging-event"
    assert request.headers["upstash-failure-callback"] == f"{PUBLIC_BASE_URL}/api/qstash/failures"
    assert request.headers["content-type"] == "application/json"
    ledger = await backend.pool.fetchrow("select state, qstash_message_id from ingest_ledger")
    assert ledger is not None
    assert (ledger["state"], ledger["qstash_message_id"]) == ("published", message.message_id)


async def test_several_events_are_one_batch_call_and_keep_their_label(
    client: httpx.AsyncClient, qstash: Any
) -> None:
    response = await post(client, wire_bytes(fixture("batch_several_items")))
    assert response.json()["published"] == 5
    (request,) = qstash.requests
    assert request.path == "/v2/batch"
    items = json.loads(request.body)
    assert [i["headers"]["Upstash-Label"] for i in items] == ["instagram-messaging-event"] * 5
    assert all(i["headers"]["Upstash-Timeout"] == "30s" for i in items)
    ids = [i["headers"]["Upstash-Deduplication-Id"] for i in items]
    assert len(set(ids)) == 5


async def test_configured_label_is_used(
    qstash_settings: Callable[..., Settings], qstash: Any
) -> None:
    async for client in open_client(create_app(qstash_settings(QSTASH_LABEL="shop-42"))):
        await post(client, wire_bytes(fixture("text_message")))
    assert qstash.requests[0].headers["upstash-label"] == "shop-42"


async def test_error_item_in_a_batch_does_not_lose_the_others(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    qstash.batch_item_errors.add(1)
    response = await post(client, wire_bytes(fixture("batch_several_items")))
    assert response.status_code == 200
    assert (response.json()["published"], response.json()["direct"]) == (4, 1)
    states = await backend.pool.fetch("select state, count(*) n from ingest_ledger group by state")
    assert {r["state"]: r["n"] for r in states} == {"published": 4, "direct": 1}


# --- retries and fallbacks ---------------------------------------------------------------


async def test_rate_limit_then_success_is_retried_and_published(
    client: httpx.AsyncClient, qstash: Any
) -> None:
    qstash.fail_next(429, headers={"Burst-RateLimit-Reset": "0"})
    qstash.fail_next(503)
    response = await post(client, wire_bytes(fixture("text_message")))
    assert response.json()["published"] == 1
    assert len(qstash.requests) == 3


async def test_client_error_is_not_retried_and_falls_back(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    qstash.fail_next(400)
    response = await post(client, wire_bytes(fixture("text_message")))
    assert response.status_code == 200
    assert response.json()["direct"] == 1
    assert len(qstash.requests) == 1
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_qstash_down_means_direct_processing_and_200(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    from tests.doubles.qstash import TOKEN, free_port

    settings = make_settings(
        QSTASH_TOKEN=TOKEN, QSTASH_URL=f"http://127.0.0.1:{free_port()}", PUBLISH_BUDGET_SECONDS="1"
    )
    async for client in open_client(create_app(settings)):
        response = await post(client, wire_bytes(fixture("batch_several_items")))
    assert response.status_code == 200
    assert response.json()["direct"] == 5
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    assert (
        await backend.pool.fetchval("select count(*) from ingest_ledger where state = 'direct'")
        == 5
    )


async def test_slow_qstash_beyond_the_budget_falls_back(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    qstash.delay = 2.0
    async for client in open_client(create_app(qstash_settings(PUBLISH_BUDGET_SECONDS="0.5"))):
        response = await post(client, wire_bytes(fixture("text_message")))
    assert response.json()["direct"] == 1


async def test_qstash_and_database_down_is_503_and_nothing_marked(
    make_settings: Callable[..., Settings], backend: PostgresBackend, pg_server: Any
) -> None:
    from tests.doubles.qstash import TOKEN, free_port

    settings = make_settings(QSTASH_TOKEN=TOKEN, QSTASH_URL=f"http://127.0.0.1:{free_port()}")
    async for client in open_client(create_app(settings)):
        pg_server.stop()
        try:
            response = await post(client, wire_bytes(fixture("text_message")))
        finally:
            pg_server.start()
    assert response.status_code == 503
    assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 0


async def test_direct_processing_failing_releases_the_admission(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    """QStash down and the event refused by the database: 503, and a redelivery is new."""
    from tests.doubles.qstash import TOKEN, free_port

    settings = make_settings(
        QSTASH_TOKEN=TOKEN,
        QSTASH_URL=f"http://127.0.0.1:{free_port()}",
        PUBLISH_BUDGET_SECONDS="0.3",
    )
    await backend.pool.execute(
        "alter table ig_messages add constraint no_blue check (text not like '%blue%')"
    )
    async for client in open_client(create_app(settings)):
        response = await post(client, wire_bytes(fixture("text_message")))
    assert response.status_code == 503
    assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 0


# --- duplicates and concurrency ----------------------------------------------------------


async def test_fifty_concurrent_deliveries_of_one_message_cost_one_publish(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    body = text_message("m_concurrent")
    answers = await asyncio.gather(*(post(client, body) for _ in range(50)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["published"] for a in answers) == 1
    assert len(qstash.messages) == 1
    assert len(qstash.requests) == 1
    assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 1


async def test_three_interleaved_deliveries_of_200_messages_cost_200_publishes(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    bodies = [text_message(f"m_{n:03d}", sender=str(10_000 + n)) for n in range(200)]
    deliveries = [body for _ in range(3) for body in bodies]
    app = create_app(qstash_settings(BREAKER_MAX_EVENTS="1000"))  # the default (50) would trip
    async for client in open_client(app):
        answers = await asyncio.gather(*(post(client, body) for body in deliveries))
    assert all(a.status_code == 200 for a in answers)
    assert len(qstash.messages) == 200
    assert len({m.headers["upstash-deduplication-id"] for m in qstash.messages}) == 200
    assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 200


async def test_late_redelivery_hours_later_costs_no_publish(
    client: httpx.AsyncClient, qstash: Any
) -> None:
    body = text_message("m_late")
    await post(client, body)
    now = [__import__("time").time() + 6 * 3600]  # far past QStash's 10-minute window
    qstash.clock = lambda: now[0]
    try:
        again = await post(client, body)
    finally:
        qstash.clock = __import__("time").time
    assert again.json()["duplicate"] == 1
    assert len(qstash.requests) == 1


async def test_process_killed_between_admission_and_publish_is_readmitted_after_the_lease(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    settings = qstash_settings(LEDGER_LEASE_SECONDS="1")
    body = text_message("m_crash")
    (event,) = parse_delivery(json.loads(body))
    admitted = await backend.call(
        "ingest_admit",
        {"p_events": [event.model_dump(mode="json")], "p_limits": _limits(lease_seconds=1)},
    )
    assert admitted[0]["outcome"] == "new"  # ...and then the process died
    async for client in open_client(create_app(settings)):
        within = await post(client, body)
        assert within.json()["duplicate"] == 1  # the lease still holds
        await asyncio.sleep(1.2)
        after = await post(client, body)
        assert after.json()["published"] == 1
    assert len(qstash.messages) == 1


def _limits(**overrides: int) -> dict[str, int]:
    base = {
        "breaker_max_events": 50,
        "breaker_window_seconds": 600,
        "sender_hourly_limit": 30,
        "sender_daily_limit": 100,
        "lease_seconds": 60,
    }
    return {**base, **overrides}


# --- the whole loop -----------------------------------------------------------------------


async def test_meta_to_qstash_to_consumer_stores_each_message_once(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    body = wire_bytes(fixture("batch_several_entries"))
    for _ in range(2):
        assert (await post(client, body)).status_code == 200
    assert len(qstash.messages) == 4
    assert await forward_to_consumer(client, qstash) == [200] * 4
    assert await forward_to_consumer(client, qstash) == [200] * 4  # QStash retrying
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 2
    assert await backend.pool.fetchval("select count(*) from ig_events") == 2
    published = await backend.pool.fetchval(
        "select count(*) from ingest_ledger where state = 'published'"
    )
    assert published == 4
    assert isinstance(event_from_json(qstash.messages[0].body), MessageEvent)


async def test_a_deduplicated_answer_from_qstash_counts_as_published(
    client: httpx.AsyncClient, qstash: Any, qstash_server: tuple[Any, str], backend: PostgresBackend
) -> None:
    """A publish that QStash already had (e.g. a lease-expired re-admission within its
    10-minute window) answers 202 deduplicated: the row is settled, not processed again."""
    body = text_message("m_dedup")
    (event,) = parse_delivery(json.loads(body))
    await backend.call(
        "ingest_admit",
        {"p_events": [event.model_dump(mode="json")], "p_limits": _limits(lease_seconds=1)},
    )
    await post(client, body)  # within the lease: duplicate, nothing published
    assert qstash.requests == []
    from qstash import AsyncQStash

    from tests.doubles.qstash import TOKEN

    raw = AsyncQStash(TOKEN, retry=False, base_url=qstash_server[1])
    first = await raw.message.publish_json(
        url=f"{PUBLIC_BASE_URL}{CONSUMER}", body={}, deduplication_id=event.dedup_id
    )
    await raw.http._client.aclose()
    await asyncio.sleep(1.1)
    response = await post(client, body)  # lease expired: re-admitted, QStash deduplicates
    assert response.json()["published"] == 1
    assert len(qstash.messages) == 1
    ledger = await backend.pool.fetchrow("select state, qstash_message_id from ingest_ledger")
    assert ledger is not None
    assert (ledger["state"], ledger["qstash_message_id"]) == ("published", first.message_id)
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 0
