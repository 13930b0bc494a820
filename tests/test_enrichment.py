"""Profile enrichment: once a day per profile, never failing the message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from consumers.enrichment import ProfileEnricher
from consumers.processing import Processor
from storage.postgres import PostgresBackend
from tests.doubles.graph_api import BASE_URL, TOKEN, GraphApiDouble
from tests.test_consumer import fixture_events

USER = "1234567890123456"


@pytest.fixture
def graph() -> GraphApiDouble:
    return GraphApiDouble()


@pytest.fixture
async def enricher(
    backend: PostgresBackend, graph: GraphApiDouble
) -> AsyncIterator[ProfileEnricher]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app))
    enricher = ProfileEnricher(backend, http, token=TOKEN, graph_url=BASE_URL, pause_seconds=60)
    yield enricher
    await enricher.drain()
    await http.aclose()


async def store(
    backend: PostgresBackend, enricher: ProfileEnricher, name: str = "text_message"
) -> None:
    processor = Processor(backend, after_store=enricher.schedule)
    for event in fixture_events(name):
        await processor.process(event)
    await enricher.drain()


async def profile(backend: PostgresBackend) -> dict[str, Any]:
    row = await backend.pool.fetchrow("select * from ig_profiles where igsid = $1", USER)
    assert row is not None
    return dict(row)


async def test_profile_is_fetched_and_stored(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    await store(backend, enricher)
    row = await profile(backend)
    assert (row["username"], row["follower_count"], row["is_user_follow_business"]) == (
        "shopper_3456", 321, True,
    )  # fmt: skip
    assert row["profile_pic_fetched_at"] is not None
    (request,) = graph.requests
    assert request["igsid"] == USER
    assert "is_verified_user" in request["fields"]


async def test_at_most_once_per_profile_per_day(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    for name in ("text_message", "reaction", "edit"):
        await store(backend, enricher, name)
    assert len(graph.requests) == 1


async def test_echo_enriches_the_customer_not_the_business(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    await store(backend, enricher, "echo")
    assert [r["igsid"] for r in graph.requests] == [USER]


async def test_transient_failure_keeps_the_message_and_retries_on_a_later_event(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    graph.fail_next(500, 2, times=3)
    await store(backend, enricher)
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    assert (await profile(backend))["enrichment_error"] == "graph error 500/2"
    await store(backend, enricher, "reaction")
    assert (await profile(backend))["username"] == "shopper_3456"


async def test_invalid_token_stops_further_calls(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    graph.fail_next(400, 190)
    await store(backend, enricher)
    assert enricher.credentials.bearer_for("17841400000000001") is None
    await store(backend, enricher, "reaction")
    assert len(graph.requests) == 1
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_rate_limit_pauses_calls_instead_of_hammering(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    graph.fail_next(400, 613)
    await store(backend, enricher)
    await store(backend, enricher, "reaction")
    assert len(graph.requests) == 1  # one call, no retries, then paused


async def test_permanent_error_waits_the_full_interval(
    backend: PostgresBackend, enricher: ProfileEnricher, graph: GraphApiDouble
) -> None:
    graph.fail_next(400, 100)
    await store(backend, enricher)
    await store(backend, enricher, "reaction")
    assert len(graph.requests) == 1
    assert (await profile(backend))["enrichment_error"] == "graph error 400/100"


async def test_enrichment_is_wired_when_a_token_is_set(make_settings: Any) -> None:
    from ingest.components import make_enricher

    assert make_enricher(make_settings(), None, None) is None  # type: ignore[arg-type]
    settings = make_settings(INSTAGRAM_ACCESS_TOKEN=TOKEN)
    assert isinstance(make_enricher(settings, None, None), ProfileEnricher)  # type: ignore[arg-type]
