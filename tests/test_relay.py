"""Admission is the ack; the relay settles every admitted event: published, direct, failed.

What Meta sees (status codes), what QStash sees (requests, headers, messages) and what
the ledger and the tables hold are all asserted: one inbound event costs at most one
QStash message, and nothing answered 200 is lost.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from contracts import MessageEvent, event_from_json
from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, forward_to_consumer, open_client, wait_settled
from tests.doubles.qstash import TOKEN, free_port
from tests.meta import fixture, post, text_message, wire_bytes

CONSUMER = "/api/qstash/instagram-ingestion"


@pytest.fixture
async def client(qstash_settings: Callable[..., Settings]) -> Any:
    async for c in open_client(create_app(qstash_settings())):
        yield c


async def ledger(backend: PostgresBackend) -> list[dict[str, Any]]:
    rows = await backend.pool.fetch(
        "select dedup_id, state, reason, qstash_message_id, event from ingest_ledger"
        " order by admitted_at, dedup_id"
    )
    return [dict(r) for r in rows]


# --- what QStash receives ---------------------------------------------------------------


async def test_one_message_is_one_batch_call_with_every_header(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    response = await post(client, wire_bytes(fixture("text_message")))
    assert response.status_code == 200
    assert response.json()["new"] == 1
    assert await wait_settled(backend) == {"published": 1}
    (request,) = qstash.requests
    (message,) = qstash.messages
    event = event_from_json(message.body)
    assert request.path == "/v2/batch"
    (item,) = json.loads(request.body)
    assert item["destination"] == f"{PUBLIC_BASE_URL}{CONSUMER}"
    headers = item["headers"]
    assert headers["Upstash-Deduplication-Id"] == f"ig_msg_{event.mid}"  # type: ignore[union-attr]
    assert headers["Upstash-Timeout"] == "30s"
    assert headers["Upstash-Retries"] == "3"
    assert headers["Upstash-Label"] == "instagram-messaging-event"
    assert headers["Upstash-Failure-Callback"] == f"{PUBLIC_BASE_URL}/api/qstash/failures"
    assert headers["Content-Type"] == "application/json"
    (row,) = await ledger(backend)
    assert (row["state"], row["qstash_message_id"]) == ("published", message.message_id)
    assert row["event"] is None  # the payload is dropped once QStash holds it


async def test_several_events_share_one_batch_call_and_keep_their_label(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    response = await post(client, wire_bytes(fixture("batch_several_items")))
    assert response.json()["new"] == 5
    assert await wait_settled(backend) == {"published": 5}
    (request,) = qstash.requests
    items = json.loads(request.body)
    assert [i["headers"]["Upstash-Label"] for i in items] == ["instagram-messaging-event"] * 5
    assert len({i["headers"]["Upstash-Deduplication-Id"] for i in items}) == 5


async def test_configured_label_is_used(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(qstash_settings(QSTASH_LABEL="shop-42"))):
        await post(client, wire_bytes(fixture("text_message")))
        await wait_settled(backend)
    (item,) = json.loads(qstash.requests[0].body)
    assert item["headers"]["Upstash-Label"] == "shop-42"


async def test_an_item_qstash_refuses_is_stored_directly_and_the_others_published(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    qstash.batch_item_errors.add(1)
    await post(client, wire_bytes(fixture("batch_several_items")))
    assert await wait_settled(backend) == {"published": 4, "direct": 1}
    refused = [r for r in await ledger(backend) if r["state"] == "direct"]
    assert refused[0]["reason"] == "qstash_refused"


# --- retries and fallbacks ---------------------------------------------------------------


async def test_rate_limit_then_server_error_is_retried_and_published(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    qstash.fail_next(429, headers={"Burst-RateLimit-Reset": "0"})
    qstash.fail_next(503)
    await post(client, wire_bytes(fixture("text_message")))
    assert await wait_settled(backend) == {"published": 1}
    assert len(qstash.requests) == 3
    assert len(qstash.messages) == 1


async def test_retry_after_is_honoured(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    qstash.fail_next(503, headers={"Retry-After": "1"})
    started = time.monotonic()
    await post(client, wire_bytes(fixture("text_message")))
    assert await wait_settled(backend) == {"published": 1}
    assert time.monotonic() - started >= 1.0
    assert len(qstash.requests) == 2


async def test_a_client_error_for_the_whole_batch_is_not_retried_and_goes_direct(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    qstash.fail_next(400)
    await post(client, wire_bytes(fixture("text_message")))
    assert await wait_settled(backend) == {"direct": 1}
    assert len(qstash.requests) == 1
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_qstash_unreachable_means_direct_processing(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    settings = make_settings(
        QSTASH_TOKEN=TOKEN, QSTASH_URL=f"http://127.0.0.1:{free_port()}", PUBLISH_BUDGET_SECONDS="1"
    )
    async for client in open_client(create_app(settings)):
        response = await post(client, wire_bytes(fixture("batch_several_items")))
        assert response.status_code == 200
        assert await wait_settled(backend) == {"direct": 5}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    reasons = await backend.pool.fetch("select distinct reason from ingest_ledger")
    assert [r["reason"] for r in reasons] == ["qstash_unavailable"]


async def test_slow_qstash_beyond_the_budget_falls_back(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    qstash.delay = 2.0
    async for client in open_client(create_app(qstash_settings(PUBLISH_BUDGET_SECONDS="0.5"))):
        await post(client, wire_bytes(fixture("text_message")))
        assert await wait_settled(backend) == {"direct": 1}


@pytest.mark.parametrize(
    "garbage",
    [Response(b"{}", status_code=200), Response(b"not json", status_code=201)],
    ids=["json-without-message-ids", "not-json"],
)
async def test_a_2xx_answer_we_cannot_read_is_retried_under_the_same_dedup_id(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend, garbage: Response
) -> None:
    qstash.answer_next(garbage)
    await post(client, wire_bytes(fixture("text_message")))
    assert await wait_settled(backend) == {"published": 1}
    first, second = (json.loads(r.body)[0]["headers"] for r in qstash.requests)
    assert first["Upstash-Deduplication-Id"] == second["Upstash-Deduplication-Id"]
    assert len(qstash.messages) == 1


async def test_qstash_answering_garbage_until_the_budget_ends_stores_directly(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    qstash.answer_next(Response(b"[]", status_code=200), times=1000)
    async for client in open_client(create_app(qstash_settings(PUBLISH_BUDGET_SECONDS="0.5"))):
        await post(client, wire_bytes(fixture("text_message")))
        assert await wait_settled(backend) == {"direct": 1}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_chunks_qstash_accepted_are_kept_when_another_chunk_fails(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    """250 events: three /v2/batch calls. The one holding m99 never gets through: its
    events are stored directly, never also published; the chunks QStash took stay
    published, never also stored directly."""
    items = [
        {**fixture("text_message")["entry"][0]["messaging"][0], "message": {"mid": f"m{n}"}}
        for n in range(250)
    ]
    payload = {"object": "instagram", "entry": [{"id": "17841400000000001", "messaging": items}]}
    qstash.unavailable_for.add("ig_msg_m99")
    settings = qstash_settings(PUBLISH_BUDGET_SECONDS="0.5", SENDER_HOURLY_LIMIT="1000")
    async for client in open_client(create_app(settings)):
        assert (await post(client, wire_bytes(payload))).json()["new"] == 250
        states = await wait_settled(backend)
        assert await forward_to_consumer(client, qstash) == [200] * len(qstash.messages)
    chunks = [
        {item["headers"]["Upstash-Deduplication-Id"] for item in json.loads(r.body)}
        for r in qstash.requests
    ]
    failing = next(chunk for chunk in chunks if "ig_msg_m99" in chunk)
    assert len(failing) in (50, 100)
    assert states == {"published": 250 - len(failing), "direct": len(failing)}
    published = {m.headers["upstash-deduplication-id"] for m in qstash.messages}
    direct = await backend.pool.fetch("select dedup_id from ingest_ledger where state = 'direct'")
    assert {r["dedup_id"] for r in direct} == failing
    assert published.isdisjoint(failing)
    assert len(published) == len(qstash.messages) == 250 - len(failing)
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 250


# --- duplicates and concurrency ----------------------------------------------------------


async def test_fifty_concurrent_deliveries_of_one_message_cost_one_publish(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    body = text_message("m_concurrent")
    answers = await asyncio.gather(*(post(client, body) for _ in range(50)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["new"] for a in answers) == 1
    assert sum(a.json()["duplicate"] for a in answers) == 49
    assert await wait_settled(backend) == {"published": 1}
    assert len(qstash.messages) == 1
    assert len(qstash.requests) == 1


async def test_three_interleaved_deliveries_of_200_messages_cost_200_publishes(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    bodies = [text_message(f"m_{n:03d}", sender=str(10_000 + n)) for n in range(200)]
    answers = await asyncio.gather(*(post(client, b) for _ in range(3) for b in bodies))
    assert all(a.status_code == 200 for a in answers)
    assert await wait_settled(backend) == {"published": 200}
    assert len(qstash.messages) == 200
    assert len({m.headers["upstash-deduplication-id"] for m in qstash.messages}) == 200
    assert len(qstash.requests) <= 20  # batched: at most 100 messages a call, most far fuller


async def test_late_redelivery_hours_later_costs_no_publish(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    body = text_message("m_late")
    await post(client, body)
    await wait_settled(backend)
    qstash.clock = lambda: time.time() + 6 * 3600  # far past QStash's 10-minute window
    try:
        again = await post(client, body)
    finally:
        qstash.clock = time.time
    assert again.json()["duplicate"] == 1
    assert await wait_settled(backend) == {"published": 1}
    assert len(qstash.requests) == 1


async def test_meta_to_qstash_to_consumer_stores_each_message_once(
    client: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    body = wire_bytes(fixture("batch_several_entries"))
    for _ in range(2):
        assert (await post(client, body)).status_code == 200
    assert await wait_settled(backend) == {"published": 4}
    assert len(qstash.messages) == 4
    assert await forward_to_consumer(client, qstash) == [200] * 4
    assert await forward_to_consumer(client, qstash) == [200] * 4  # QStash retrying
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 2
    assert await backend.pool.fetchval("select count(*) from ig_events") == 2
    kinds = {type(event_from_json(m.body)) for m in qstash.messages}
    assert MessageEvent in kinds


async def test_two_instances_on_one_database_publish_and_store_each_event_once(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    """The same deliveries sent to either instance at random, and to both at once."""
    bodies = [text_message(f"m_two_{n}", sender=str(20_000 + n)) for n in range(120)]
    one, two = create_app(qstash_settings()), create_app(qstash_settings())
    async for a in open_client(one):
        async for b in open_client(two):
            sends = [post(a if n % 3 else b, body) for n, body in enumerate(bodies)]
            sends += [post(b if n % 2 else a, body) for n, body in enumerate(bodies)]
            answers = await asyncio.gather(*sends)
            assert all(r.status_code == 200 for r in answers)
            assert sum(r.json()["new"] for r in answers) == 120
            assert await wait_settled(backend) == {"published": 120}
            assert await forward_to_consumer(a, qstash) == [200] * 120
    assert len(qstash.messages) == 120
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 120


# --- nothing answered 200 is lost ----------------------------------------------------------


async def test_a_database_blip_during_direct_processing_is_retried_after_the_lease(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend, pg_server: Any
) -> None:
    """QStash fails, then the database goes away while the relay stores the event
    directly, so neither the store nor the settle is written: the claim's lease ends
    and the relay claims the row again, with no help from Meta."""
    qstash.delay = 1.0
    settings = qstash_settings(PUBLISH_BUDGET_SECONDS="0.5", LEDGER_LEASE_SECONDS="2")
    async for client in open_client(create_app(settings)):
        assert (await post(client, text_message("m_blip"))).status_code == 200
        pg_server.stop()
        await asyncio.sleep(1.5)
        pg_server.start()
        assert await wait_settled(backend, within=15) == {"direct": 1}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_a_bad_item_fails_alone_and_the_good_ones_are_stored(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    """[good, bad, good] in one claim: the bad one is `failed` with its reason (and
    replayable), the others are stored; the database's own refusal likewise."""
    await backend.pool.execute(
        "alter table ig_messages add constraint no_blue check (text not like '%blue%')"
    )
    good = [e.model_dump(mode="json") for e in parse_delivery(json.loads(text_message("g1")))]
    blue = parse_delivery(json.loads(text_message("b1", text="the blue one")))
    not_a_contract_event = {"dedup_id": "ig_msg_x", "kind": "message", "v": 1}
    good2 = [e.model_dump(mode="json") for e in parse_delivery(json.loads(text_message("g2")))]
    events = [*good, not_a_contract_event, blue[0].model_dump(mode="json"), *good2]
    await backend.call("ingest_admit", {"p_events": events})
    async for _ in open_client(create_app(make_settings())):
        assert await wait_settled(backend) == {"direct": 2, "failed": 2}
    rows = {r["dedup_id"]: r for r in await ledger(backend)}
    assert rows["ig_msg_x"]["reason"].startswith("not a contract event")
    assert "no_blue" in rows[blue[0].dedup_id]["reason"]
    assert "blue one" not in rows[blue[0].dedup_id]["reason"]  # no message text in the reason
    assert rows[blue[0].dedup_id]["event"]["mid"] == "b1"  # kept for replay
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 2


async def test_one_item_the_ledger_refuses_does_not_fail_innocent_deliveries(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    """A refusal the edge did not foresee (a test-only constraint): the item is recorded
    as failed with its raw, every delivery sharing the group commit is answered 200."""
    await backend.pool.execute(
        "alter table ingest_ledger add constraint no_poison check (sender_id <> '666')"
    )
    bodies = [text_message(f"m_inn_{n}", sender=str(30_000 + n)) for n in range(150)]
    bodies.insert(75, text_message("m_poison", sender="666"))
    answers = await asyncio.gather(*(post(client, body) for body in bodies))
    assert [a.status_code for a in answers] == [200] * 151
    assert sum(a.json()["failed"] for a in answers) == 1
    assert await wait_settled(backend) == {"published": 150, "failed": 1}
    row = await backend.pool.fetchrow(
        "select reason, event_text from ingest_ledger where state = 'failed'"
    )
    assert row is not None
    assert "no_poison" in row["reason"]
    assert "m_poison" in row["event_text"]


async def test_a_delivery_the_database_cannot_parse_fails_alone(
    backend: PostgresBackend,
) -> None:
    """Past the edge's own clean-up (which makes such text storable), a refusal of the
    call's data itself is retried per delivery: only the delivery at fault gets 503."""
    from ingest.delivery.acceptance import NotAccepted
    from ingest.delivery.admission import Admission

    admission = Admission(backend)
    good = [parse_delivery(json.loads(text_message(f"m_ok_{n}")))[0] for n in range(5)]
    (bad,) = parse_delivery(json.loads(text_message("m_bad")))
    bad = bad.model_copy(update={"text": "lone \ud800 surrogate"})
    results = await asyncio.gather(
        *(admission.accept([event]) for event in [*good[:2], bad, *good[2:]]),
        return_exceptions=True,
    )
    assert isinstance(results[2], NotAccepted)
    assert [r.new for r in results if not isinstance(r, BaseException)] == [1] * 5
