"""`/metrics` after a known sequence shows exactly the expected counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumers.errors import NON_RETRYABLE_HEADER
from contracts import event_to_json
from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import open_client, wait_settled
from tests.meta import post, text_message
from tests.test_consumer import deliver, fixture_events


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def scrape_once_settled(client: httpx.AsyncClient, state: str) -> dict[Any, float]:
    """The first scrape that counts a row settled as `state`: the relay's pass, whose
    observations come together, is over."""
    for _ in range(500):
        got = samples((await client.get("/metrics")).text)
        if got.get(("ingest_relay_settled_total", (("state", state),))):
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"no row settled as {state}")


@pytest.fixture
async def client(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    """The service with its metrics open to anyone (as METRICS_PUBLIC=true makes them)."""
    async for c in open_client(create_app(make_settings(METRICS_PUBLIC="true"))):
        yield c


async def test_scrape_after_a_known_sequence(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await post(client, text_message("m_1"))  # new, then stored directly (no QStash here)
    await post(client, text_message("m_1"))  # duplicate
    await wait_settled(backend)
    await client.post(
        "/api/webhooks/instagram", content=b"{}", headers={"Content-Type": "application/json"}
    )
    (event,) = fixture_events("reaction")
    await deliver(client, event_to_json(event))  # 200
    assert (await deliver(client, b'{"v":9}')).headers[NON_RETRYABLE_HEADER] == "true"  # 489
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True}
    )
    await post(client, text_message("m_2"))  # new, then held
    await wait_settled(backend)

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    assert got[("ingest_webhook_deliveries_total", (("status", "200"),))] == 3
    assert got[("ingest_webhook_deliveries_total", (("status", "401"),))] == 1
    assert got[("ingest_webhook_events_total", (("kind", "message"),))] == 3
    assert got[("ingest_admissions_total", (("outcome", "new"),))] == 2
    assert got[("ingest_admissions_total", (("outcome", "duplicate"),))] == 1
    assert got[("ingest_relay_settled_total", (("state", "direct"),))] == 1
    assert got[("ingest_relay_settled_total", (("state", "held"),))] == 1
    assert got[("ingest_gate_refusals_total", (("reason", "qstash_off"),))] == 1
    assert got[("ingest_gate_refusals_total", (("reason", "kill_switch"),))] == 1
    assert got[("ingest_relay_lag_seconds_count", ())] == 1  # the direct one; held is no lag
    assert got[("ingest_consumer_deliveries_total", (("status_class", "2xx"),))] == 1
    assert got[("ingest_consumer_deliveries_total", (("status_class", "4xx"),))] == 1
    assert got[("ingest_held_events", ())] == 1
    assert got[("ingest_pending_events", ())] == 0
    assert got[("ingest_failed_events", ())] == 0
    assert got[("ingest_kill_switch_active", ())] == 1
    assert got[("ingest_breaker_tripped", ())] == 0
    assert "1234567890123456" not in response.text  # no user IDs as labels


async def test_publish_latency_is_observed(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(qstash_settings(METRICS_PUBLIC="true"))):
        await post(client, text_message("m_lat"))
        assert await wait_settled(backend) == {"published": 1}
        got = samples((await client.get("/metrics")).text)
    assert got[("ingest_qstash_publish_seconds_count", ())] == 1


async def test_relay_lag_is_the_relays_time_to_deliver_never_an_operators_hold(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    """Observed when an event is published or stored directly, from its admission or, for
    a replayed event, from the replay; settling an event as `held` (or `failed`) is no
    delivery, and the 40 minutes it was held are the operator's, not the relay's."""
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True}
    )
    await post(client, text_message("m_held_then_replayed"))
    held = await scrape_once_settled(client, "held")
    assert held[("ingest_relay_lag_seconds_count", ())] == 0
    await backend.pool.execute("update ingest_ledger set admitted_at = now() - interval '40 min'")
    await backend.call(
        "ingest_set_kill_switch",
        {"p_active": False, "p_reason": None, "p_by": "t", "p_hold": False},
    )
    await backend.call("ingest_replay", {"p_states": ["held"]})
    replayed = await scrape_once_settled(client, "direct")
    assert replayed[("ingest_relay_lag_seconds_count", ())] == 1
    assert replayed[("ingest_relay_lag_seconds_sum", ())] < 60
    await backend.pool.execute(
        "alter table ig_messages add constraint no_bye check (text <> 'bye')"
    )
    await post(client, text_message("m_unstorable", text="bye"))
    failed = await scrape_once_settled(client, "failed")
    assert failed[("ingest_relay_lag_seconds_count", ())] == 1


async def test_metrics_token_protects_the_scrape(make_settings: Callable[..., Settings]) -> None:
    async for client in open_client(create_app(make_settings(METRICS_TOKEN="scrape-me"))):
        assert (await client.get("/metrics")).status_code == 401
        authorised = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert authorised.status_code == 200


async def test_metrics_are_closed_outside_development_without_a_token(
    make_settings: Callable[..., Settings],
) -> None:
    async for client in open_client(create_app(make_settings())):
        response = await client.get("/metrics")
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["error"]


async def test_database_gauges_are_absent_not_zero_while_the_database_is_down(
    client: httpx.AsyncClient, backend: PostgresBackend, pg_server: Any
) -> None:
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": False}
    )
    up = samples((await client.get("/metrics")).text)
    assert (up[("ingest_database_up", ())], up[("ingest_kill_switch_active", ())]) == (1, 1)
    pg_server.stop()
    try:
        response = await client.get("/metrics")
    finally:
        pg_server.start()
    assert response.status_code == 200
    down = samples(response.text)
    assert down[("ingest_database_up", ())] == 0
    assert ("ingest_kill_switch_active", ()) not in down  # unknown, not "off"
    assert ("ingest_pending_events", ()) not in down
