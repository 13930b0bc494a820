"""The Supabase backend at the HTTP level, against a PostgREST double on real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from consumers.errors import NON_RETRYABLE_HEADER
from contracts import event_to_json
from ingest.app import create_app
from ingest.settings import Settings
from storage import DataRejected, StorageUnavailable
from storage.postgres import PostgresBackend
from storage.supabase import SupabaseBackend
from tests.conftest import BASE_ENV, open_client, wait_settled
from tests.doubles.postgrest import SERVICE_ROLE_KEY, PostgrestDouble
from tests.meta import post, text_message
from tests.test_consumer import deliver, fixture_events

SUPABASE_URL = "http://project.supabase.test"


@pytest.fixture
def postgrest(backend: PostgresBackend) -> PostgrestDouble:
    return PostgrestDouble(backend)


@pytest.fixture
def supabase_settings() -> Settings:
    env = {**BASE_ENV, "SUPABASE_URL": SUPABASE_URL, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY}
    return Settings.from_env(env, env_file=None)


@pytest.fixture
async def client(
    supabase_settings: Settings, postgrest: PostgrestDouble
) -> AsyncIterator[httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=postgrest.app))
    async for c in open_client(create_app(supabase_settings, http=http)):
        yield c


async def test_the_whole_flow_runs_through_postgrest_rpc(
    client: httpx.AsyncClient, postgrest: PostgrestDouble, backend: PostgresBackend
) -> None:
    response = await post(client, text_message("m_supabase"))
    assert response.status_code == 200
    assert response.json()["new"] == 1
    assert await wait_settled(backend) == {"direct": 1}
    assert await backend.pool.fetchval("select text from ig_messages") == "hi"
    paths = [path for path, _, _ in postgrest.requests]
    assert "/rest/v1/rpc/ingest_relay_claim" in paths  # the relay's claims (and sweeps)
    assert [p for p in paths if p != "/rest/v1/rpc/ingest_relay_claim"][:3] == [
        "/rest/v1/rpc/ingest_admit",
        "/rest/v1/rpc/ig_apply_event",
        "/rest/v1/rpc/ingest_relay_settle",
    ]


async def test_each_call_carries_the_key_and_named_json_arguments(
    client: httpx.AsyncClient, postgrest: PostgrestDouble
) -> None:
    await post(client, text_message("m_headers"))
    _, headers, body = next(r for r in postgrest.requests if r[0].endswith("/ingest_admit"))
    assert headers["apikey"] == SERVICE_ROLE_KEY
    assert headers["authorization"] == f"Bearer {SERVICE_ROLE_KEY}"
    assert headers["content-type"].startswith("application/json")
    args = json.loads(body)
    assert set(args) == {"p_events"}
    assert args["p_events"][0]["mid"] == "m_headers"


async def test_readyz_goes_through_postgrest(client: httpx.AsyncClient) -> None:
    assert (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"code": "23514", "message": "check violated", "details": None, "hint": None},
            DataRejected,
        ),
        (
            400,
            {"code": "22P02", "message": "invalid input syntax", "details": None, "hint": None},
            DataRejected,
        ),
        (
            409,
            {"code": "40001", "message": "serialization failure", "details": None, "hint": None},
            StorageUnavailable,
        ),
        (
            503,
            {"code": "PGRST000", "message": "no connection", "details": None, "hint": None},
            StorageUnavailable,
        ),
        (
            504,
            {"code": "PGRST003", "message": "pool timeout", "details": None, "hint": None},
            StorageUnavailable,
        ),
        (
            404,
            {"code": "PGRST202", "message": "function not found", "details": None, "hint": None},
            StorageUnavailable,
        ),
        (
            400,
            {"code": "PGRST100", "message": "parse error", "details": None, "hint": None},
            DataRejected,
        ),
        (502, "<html>bad gateway</html>", StorageUnavailable),
        (429, "slow down", StorageUnavailable),
        (408, "timeout", StorageUnavailable),
        (413, "too large", DataRejected),
    ],
)
async def test_postgrest_errors_map_onto_the_storage_errors(
    postgrest: PostgrestDouble, status: int, body: Any, expected: type[Exception]
) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=postgrest.app))
    backend = SupabaseBackend(SUPABASE_URL, SERVICE_ROLE_KEY, http)
    await backend.open()
    postgrest.answer_next(status, body)
    with pytest.raises(expected):
        await backend.call("ingest_status", {})
    await http.aclose()


@pytest.mark.parametrize(
    ("code", "status", "answer"),
    [("23514", 400, 489), ("PGRST000", 503, 500)],
)
async def test_consumer_answers_postgrest_errors_through_the_error_table(
    client: httpx.AsyncClient, postgrest: PostgrestDouble, code: str, status: int, answer: int
) -> None:
    (event,) = fixture_events("text_message")
    postgrest.answer_next(status, {"code": code, "message": "x", "details": None, "hint": None})
    response = await deliver(client, event_to_json(event))
    assert response.status_code == answer
    assert (response.headers.get(NON_RETRYABLE_HEADER) == "true") is (answer == 489)


async def test_wrong_key_is_refused_and_retryable(
    postgrest: PostgrestDouble, make_settings: Callable[..., Settings]
) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=postgrest.app))
    backend = SupabaseBackend(SUPABASE_URL, SERVICE_ROLE_KEY.replace("c2ln", "eHh4"), http)
    await backend.open()
    with pytest.raises(StorageUnavailable, match="PGRST301"):
        await backend.call("ingest_status", {})
    await http.aclose()


async def test_readyz_is_503_whatever_postgrest_refuses_with(
    client: httpx.AsyncClient, postgrest: PostgrestDouble
) -> None:
    postgrest.answer_next(400, {"code": "PGRST100", "message": "x", "details": None, "hint": None})
    assert (await client.get("/readyz")).status_code == 503
