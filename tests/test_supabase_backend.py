"""The Supabase backend against a real PostgREST (supabase-py `rpc` → gateway → PostgREST).

The project is the session's `supabase_stack`: Supabase's roles, our migrations
applied by `supabase db push`, PostgREST 12 behind a `/rest/v1` gateway, keys signed
with the project's JWT secret. Only answers no real server gives here come from the
double (tests/doubles/postgrest.py), at the end of this file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from consumers.errors import NON_RETRYABLE_HEADER
from contracts import event_to_json
from ingest.app import create_app
from ingest.config.env import settings_from_env
from ingest.config.settings import Settings
from storage import DataRejected, StorageError, StorageUnavailable
from storage.supabase import SupabaseBackend
from tests.conftest import BASE_ENV, forward_to_consumer, open_client, wait_settled
from tests.doubles.postgrest import PostgrestDouble
from tests.doubles.qstash import TOKEN
from tests.meta import post, text_message
from tests.supabase_stack import ANON_KEY, SERVICE_ROLE_KEY, SupabaseStack, api_key
from tests.test_consumer import deliver, fixture_events
from tests.test_flow_direct import FIXTURES, body_of

RPC = "/rest/v1/rpc/"
CLAIM = RPC + "ingest_relay_claim"


def calls(supabase: SupabaseStack) -> list[str]:
    """The gateway's requests, without the relay's claims (it also sweeps every second) and
    the start-up's turn configuration (turns off: stores are told to open none)."""
    return [path for path in supabase.paths() if path not in (CLAIM, RPC + "ingest_turn_configure")]


def supabase_settings(stack: SupabaseStack, key: str = SERVICE_ROLE_KEY) -> Settings:
    env = {**BASE_ENV, "SUPABASE_URL": stack.url, "SUPABASE_SERVICE_ROLE_KEY": key}
    return settings_from_env(env, env_file=None)


@pytest.fixture
async def client(supabase: SupabaseStack) -> AsyncIterator[httpx.AsyncClient]:
    """The service configured as a Supabase user configures it: URL and service-role key."""
    async for c in open_client(create_app(supabase_settings(supabase))):
        yield c


@pytest.fixture
async def rpc(supabase: SupabaseStack) -> AsyncIterator[SupabaseBackend]:
    backend = SupabaseBackend(supabase.url, SERVICE_ROLE_KEY)
    await backend.open()
    yield backend
    await backend.close()


# --- the flow ---------------------------------------------------------------------------


async def test_a_signed_webhook_is_stored_through_supabase_end_to_end(
    client: httpx.AsyncClient, supabase: SupabaseStack
) -> None:
    response = await post(client, body_of("text_message"))
    assert response.status_code == 200
    assert response.json()["new"] == 1
    assert await wait_settled(supabase) == {"direct": 1}
    message = (await supabase.fetch("select text, direction, sender_id from ig_messages"))[0]
    assert dict(message) == {
        "text": "Hi! Is the blue one still available? 💙",
        "direction": "in",
        "sender_id": "1234567890123456",
    }
    assert await supabase.fetchval("select messages_in from ig_profiles") == 1
    ledger = (await supabase.fetch("select state, event from ingest_ledger"))[0]
    assert (ledger["state"], ledger["event"]) == ("direct", None)
    assert calls(supabase) == [
        RPC + "ingest_admit", RPC + "ig_apply_event", RPC + "ingest_relay_settle",
    ]  # fmt: skip
    assert CLAIM in supabase.paths()


async def test_the_qstash_flow_stores_through_supabase_end_to_end(
    supabase: SupabaseStack, qstash_server: tuple[Any, str], qstash: Any
) -> None:
    _, qstash_url = qstash_server
    env = {**BASE_ENV, "SUPABASE_URL": supabase.url, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY}
    settings = settings_from_env({**env, "QSTASH_TOKEN": TOKEN, "QSTASH_URL": qstash_url}, None)
    async for c in open_client(create_app(settings)):
        response = await post(c, text_message("m_via_qstash", text="through qstash"))
        assert response.json()["new"] == 1
        assert await wait_settled(supabase) == {"published": 1}
        assert await forward_to_consumer(c, qstash) == [200]
    assert await supabase.fetchval("select text from ig_messages") == "through qstash"
    assert await supabase.fetchval("select state from ingest_ledger") == "published"
    assert calls(supabase) == [
        RPC + "ingest_admit", RPC + "ingest_relay_settle", RPC + "ig_apply_event",
    ]  # fmt: skip


async def test_every_fixture_is_stored_through_postgrest(
    client: httpx.AsyncClient, supabase: SupabaseStack
) -> None:
    expected = json.loads((FIXTURES / "expected_kinds.json").read_text())
    for name in sorted(expected):
        response = await post(client, body_of(name))
        assert response.status_code == 200, (name, response.text)
    assert set(await wait_settled(supabase)) == {"direct"}
    kinds = await supabase.fetch("select distinct kind from ig_events")
    assert {r["kind"] for r in kinds} == {
        "read", "postback", "referral", "change", "unsupported", "message_edit",
    }  # fmt: skip


async def test_meta_redelivering_a_message_stores_it_once_through_postgrest(
    client: httpx.AsyncClient, supabase: SupabaseStack
) -> None:
    body = text_message("m_redelivered")
    answers = [await post(client, body) for _ in range(3)]
    assert [a.json()["new"] for a in answers] == [1, 0, 0]
    assert await wait_settled(supabase) == {"direct": 1}
    assert await supabase.fetchval("select count(*) from ig_messages") == 1


async def test_nul_characters_are_stored_as_replacement_characters_through_postgrest(
    client: httpx.AsyncClient, supabase: SupabaseStack
) -> None:
    response = await post(client, text_message("m_nul", text="nul\x00here"))
    assert response.status_code == 200
    assert await wait_settled(supabase) == {"direct": 1}
    assert await supabase.fetchval("select text from ig_messages") == "nul\ufffdhere"


async def test_each_call_carries_the_service_role_key_and_named_json_arguments(
    client: httpx.AsyncClient, supabase: SupabaseStack
) -> None:
    await post(client, text_message("m_headers"))
    admit = next(r for r in supabase.gateway.requests if r.path == RPC + "ingest_admit")
    assert admit.headers["apikey"] == SERVICE_ROLE_KEY
    assert admit.headers["authorization"] == f"Bearer {SERVICE_ROLE_KEY}"
    assert admit.headers["content-type"].startswith("application/json")
    args = json.loads(admit.body)
    assert set(args) == {"p_events"}
    assert args["p_events"][0]["mid"] == "m_headers"


async def test_readyz_goes_through_postgrest(
    client: httpx.AsyncClient, supabase: SupabaseStack
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    assert calls(supabase) == [RPC + "ingest_status"]


async def test_readyz_is_503_when_the_gateway_refuses_the_key(supabase: SupabaseStack) -> None:
    wrong = api_key("service_role", secret="some-other-project-secret-0123456789")
    async for c in open_client(create_app(supabase_settings(supabase, key=wrong))):
        assert (await c.get("/readyz")).status_code == 503


# --- errors, as the real PostgREST sends them -------------------------------------------


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("23514", DataRejected),  # check violation
        ("23505", DataRejected),  # unique violation (PostgREST: 409)
        ("22P02", DataRejected),  # invalid text representation
        ("22P05", DataRejected),  # untranslatable character (U+0000)
        ("P0001", DataRejected),  # our own RAISE
        ("40P01", StorageUnavailable),  # deadlock
        ("55P03", StorageUnavailable),  # lock not available
        ("57014", StorageUnavailable),  # statement timeout (PostgREST: 500)
        ("53300", StorageUnavailable),  # too many connections (PostgREST: 503)
        ("42P01", StorageUnavailable),  # undefined table, mid-deploy (PostgREST: 404)
    ],
)
async def test_database_errors_map_onto_the_storage_errors(
    rpc: SupabaseBackend, sqlstate: str, expected: type[StorageError]
) -> None:
    with pytest.raises(expected) as raised:
        await rpc.call("test_raise_sqlstate", {"p_sqlstate": sqlstate})
    assert raised.value.sqlstate == sqlstate


async def test_our_own_refusals_are_permanent(rpc: SupabaseBackend) -> None:
    with pytest.raises(DataRejected, match="unsupported contract version") as raised:
        await rpc.call("ig_apply_event", {"p_event": {"v": "9"}})
    assert raised.value.sqlstate == "22023"


async def test_a_function_postgrest_does_not_know_is_retryable(rpc: SupabaseBackend) -> None:
    with pytest.raises(StorageUnavailable, match="PGRST202"):
        await rpc.call("ingest_no_such_function", {})


async def test_a_key_the_gateway_does_not_know_is_refused_and_retryable(
    supabase: SupabaseStack,
) -> None:
    wrong = SupabaseBackend(supabase.url, api_key("service_role", secret="x" * 40))
    await wrong.open()
    with pytest.raises(StorageUnavailable, match="Invalid API key"):
        await wrong.call("ingest_status", {})
    await wrong.close()


async def test_the_anon_key_can_call_none_of_our_functions(supabase: SupabaseStack) -> None:
    functions = await supabase.fetch(
        "select p.proname, coalesce(p.proargnames, '{}') as args from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public'"
        # trigger functions are no rpc (PostgREST does not expose them); test_schema_guards
        # checks that anon may execute none of them either
        " and p.prorettype <> 'trigger'::regtype"
        " order by 1"
    )
    assert len(functions) > 10
    anon = SupabaseBackend(supabase.url, ANON_KEY)
    await anon.open()
    refused = []
    for function in functions:
        with pytest.raises(StorageError) as raised:
            await anon.call(function["proname"], dict.fromkeys(function["args"]))
        refused.append((function["proname"], raised.value.sqlstate))
    await anon.close()
    assert refused == [(f["proname"], "42501") for f in functions]  # permission denied
    assert await supabase.fetchval("select kill_switch from safety_state") is False


async def test_the_consumer_answers_a_database_refusal_with_489(client: httpx.AsyncClient) -> None:
    (event,) = fixture_events("text_message")
    out_of_range = event.model_copy(update={"timestamp": 10**19})  # year 300 million
    response = await deliver(client, event_to_json(out_of_range))
    assert response.status_code == 489
    assert response.headers[NON_RETRYABLE_HEADER] == "true"


# --- answers only the double gives ------------------------------------------------------


@pytest.fixture
async def double() -> AsyncIterator[tuple[PostgrestDouble, SupabaseBackend]]:
    postgrest = PostgrestDouble()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=postgrest.app))
    backend = SupabaseBackend("http://project.supabase.test", SERVICE_ROLE_KEY, http)
    await backend.open()
    yield postgrest, backend
    await http.aclose()


def error_body(code: str) -> dict[str, Any]:
    return {"code": code, "message": code, "details": None, "hint": None}


@pytest.mark.parametrize(
    ("status", "body", "expected", "mentioned"),
    [
        (503, error_body("PGRST000"), StorageUnavailable, "PGRST000"),  # database unreachable
        (504, error_body("PGRST003"), StorageUnavailable, "PGRST003"),  # pool timeout
        (400, error_body("PGRST100"), DataRejected, "PGRST100"),  # malformed query string
        (409, error_body("40001"), StorageUnavailable, "40001"),  # see the double's docstring
        (502, "<html>bad gateway</html>", StorageUnavailable, "502"),
        (429, "slow down", StorageUnavailable, "429"),
        (408, "timeout", StorageUnavailable, "408"),
        (413, "too large", DataRejected, "413"),
    ],
)
async def test_answers_without_a_database_error_map_onto_the_storage_errors(
    double: tuple[PostgrestDouble, SupabaseBackend],
    status: int,
    body: dict[str, Any] | str,
    expected: type[Exception],
    mentioned: str,
) -> None:
    postgrest, backend = double
    postgrest.answer_next(status, body)
    with pytest.raises(expected, match=mentioned):
        await backend.call("ingest_status", {})


async def test_the_consumer_answers_an_unreachable_database_with_500(
    double: tuple[PostgrestDouble, Any],
) -> None:
    postgrest, _ = double
    env = {**BASE_ENV, "SUPABASE_URL": "http://project.supabase.test"}
    settings = settings_from_env({**env, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY}, None)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=postgrest.app))
    (event,) = fixture_events("text_message")
    postgrest.answer_next(503, error_body("PGRST000"), function="ig_apply_event")
    async for c in open_client(create_app(settings, http=http)):
        response = await deliver(c, event_to_json(event))
        assert response.status_code == 500
        assert NON_RETRYABLE_HEADER not in response.headers
