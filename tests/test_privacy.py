"""Privacy: erasure that leaves nothing behind and stays erased; Meta's callbacks; retention."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from contracts import event_to_json
from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, open_client, wait_settled
from tests.meta import post
from tests.privacy_kit import (
    ACCOUNT,
    CUSTOMER,
    PHRASE,
    a_customer_with_history,
    callback,
    found_anywhere,
    ingestctl,
    message,
    request_for,
    signed_request,
)
from tests.test_consumer import deliver


@pytest.fixture
def ctl(database_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    return functools.partial(ingestctl, database_url)


# --- erasing a customer --------------------------------------------------------------------


async def test_forget_leaves_no_trace_of_the_customer_anywhere(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    await a_customer_with_history(client, backend)
    dry = ctl("forget", CUSTOMER, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["messages"] == 4
    assert await found_anywhere(backend, PHRASE)  # a dry run changes nothing
    done = ctl("forget", CUSTOMER, "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed: ")
    assert "messages 4" in done.stdout and "dead_letters 1" in done.stdout
    assert await found_anywhere(backend, PHRASE) == []
    assert (
        await backend.pool.fetchval("select count(*) from ig_profiles where igsid = $1", CUSTOMER)
        == 0
    )
    audit = await backend.pool.fetch("select action, detail::text as detail from ingest_audit")
    assert not [a for a in audit if CUSTOMER in a["detail"]]  # the trail outlives the person
    assert "forget" in {a["action"] for a in audit}  # the erasure itself is recorded, not whom
    assert await backend.pool.fetchval("select text from ig_messages") == "another customer, kept"
    assert await backend.pool.fetchval("select count(*) from ig_tombstones") >= 1
    tombstones = await backend.pool.fetch("select key from ig_tombstones")
    assert all(CUSTOMER not in row["key"] for row in tombstones)  # a keyed hash, not the id


async def test_a_meta_redelivery_and_a_qstash_retry_of_an_erased_message_store_nothing(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    await a_customer_with_history(client, backend)
    assert ctl("forget", CUSTOMER, "--yes").returncode == 0
    again = await post(client, message("m_c0", CUSTOMER, f"{PHRASE} #0"))  # Meta redelivers
    unseen = await post(client, message("m_c9", CUSTOMER, f"{PHRASE} #9"))  # reconcile, late
    assert (again.status_code, unseen.status_code) == (200, 200)
    await wait_settled(backend)
    (event,) = parse_delivery(json.loads(message("m_c1", CUSTOMER, f"{PHRASE} #1")))
    retried = await deliver(client, event_to_json(event))  # QStash retries / a DLQ redrive
    assert (retried.status_code, retried.json()["status"]) == (200, "erased")
    assert await found_anywhere(backend, PHRASE) == []
    assert (
        await backend.pool.fetchval(
            "select state from ingest_ledger where dedup_id = 'ig_msg_m-5Fc9'"
        )
        == "erased"
    )


async def test_an_erased_customers_event_stays_erased_when_admission_goes_item_by_item(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    """An event the ledger refuses sends the whole call down the per-item path."""
    await a_customer_with_history(client, backend)
    assert ctl("forget", CUSTOMER, "--yes").returncode == 0
    await backend.pool.execute(
        "alter table ingest_ledger add constraint no_poison check (sender_id <> '666')"
    )
    late = parse_delivery(json.loads(message("m_c8", CUSTOMER, f"{PHRASE} #8")))
    poison = parse_delivery(json.loads(message("m_poison", "666", "refused")))
    events = [e.model_dump(mode="json") for e in [*poison, *late]]
    answer = await backend.call("ingest_admit", {"p_events": events})
    assert (answer["failed"], answer["erased"]) == ([poison[0].dedup_id], [late[0].dedup_id])
    assert await found_anywhere(backend, PHRASE) == []


async def test_a_message_the_customer_sends_after_the_erasure_is_stored(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    await post(client, message("m_before", CUSTOMER, "before"))
    await wait_settled(backend)
    assert ctl("forget", CUSTOMER, "--yes").returncode == 0
    later = int(time.time() * 1000) + 5_000
    await post(client, message("m_after", CUSTOMER, "written after the erasure", ts=later))
    await wait_settled(backend)
    assert (
        await backend.pool.fetchval("select text from ig_messages") == "written after the erasure"
    )


# --- Meta's callbacks ------------------------------------------------------------------------


async def test_the_data_deletion_callback_erases_the_accounts_conversations_once(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    assert ctl("accounts", "add", ACCOUNT, "--user-id", "app-user-7").returncode == 0
    await a_customer_with_history(client, backend)
    value = signed_request(request_for("app-user-7"))
    first = await callback(client, "/api/meta/data-deletion", value)
    assert first.status_code == 200, first.text
    code = first.json()["confirmation_code"]
    assert first.json()["url"] == f"{PUBLIC_BASE_URL}/api/meta/data-deletion/{code}"
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 0
    assert await found_anywhere(backend, PHRASE) == []
    again = await callback(client, "/api/meta/data-deletion", value)
    assert again.json()["confirmation_code"] == code
    status = await client.get(f"/api/meta/data-deletion/{code}")
    assert status.status_code == 200
    assert status.json()["state"] == "erased"
    assert "app-user-7" not in status.text and ACCOUNT not in status.text  # nothing personal


async def test_an_unknown_user_is_recorded_as_no_data_held(client: httpx.AsyncClient) -> None:
    answer = await callback(
        client, "/api/meta/data-deletion", signed_request(request_for("nobody"))
    )
    status = await client.get(answer.json()["url"].removeprefix(PUBLIC_BASE_URL))
    assert status.json()["state"] == "no data held"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (signed_request(request_for("u"), secret="not-our-secret"), 401),
        (signed_request(request_for("u", algorithm="HMAC-SHA1")), 400),
        (signed_request(request_for("u", issued_at=int(time.time()) - 2 * 86_400)), 401),
        ("no-dot-here", 400),
        ("a.b", 400),
    ],
    ids=["forged", "algorithm", "too-old", "malformed", "not-base64-json"],
)
async def test_a_request_not_from_meta_is_refused(
    client: httpx.AsyncClient, backend: PostgresBackend, value: str, expected: int
) -> None:
    response = await callback(client, "/api/meta/data-deletion", value)
    assert response.status_code == expected
    assert await backend.pool.fetchval("select count(*) from ig_deletion_requests") == 0


async def test_deauthorize_records_the_disconnection_and_erases_nothing(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    ctl("accounts", "add", ACCOUNT, "--user-id", "app-user-8")
    await post(client, message("m_keep", CUSTOMER, "kept"))
    await wait_settled(backend)
    response = await callback(
        client, "/api/meta/deauthorize", signed_request(request_for("app-user-8"))
    )
    assert response.status_code == 200
    assert (await backend.call("ingest_status", {}))["deauthorized_accounts"] == 1
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    assert "DISCONNECTED" in ctl("accounts", "list").stdout
    from ingest.console.reads import pulse

    assert (await pulse(backend, budget=100)).deauthorized_accounts == 1  # the console's strip


# --- retention -------------------------------------------------------------------------------


async def test_prune_removes_what_is_past_retention_and_never_held_or_failed_rows(
    make_settings: Callable[..., Settings], backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    async for client in open_client(create_app(make_settings())):
        for n in range(4):
            await post(client, message(f"m_old{n}", CUSTOMER, "old"))
        await wait_settled(backend)
    await backend.pool.execute("update ingest_ledger set admitted_at = now() - interval '40 days'")
    await backend.pool.execute(
        "update ingest_ledger set state = 'failed' where dedup_id = 'ig_msg_m-5Fold0'"
    )
    await backend.pool.execute(
        "insert into dead_letters (dlq_id, source_body, callback, created_at)"
        " values ('old', '{\"text\": \"x\"}', '{\"a\": 1}', now() - interval '20 days'),"
        " ('new', '{\"text\": \"y\"}', '{\"a\": 1}', now())"
    )
    pruned = ctl("prune", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"ledger_rows": 3, "dead_letter_bodies": 1}
    left = await backend.pool.fetch("select state from ingest_ledger")
    assert [r["state"] for r in left] == ["failed"]
    bodies = dict(await backend.pool.fetch("select dlq_id, source_body from dead_letters"))
    assert bodies == {"old": None, "new": {"text": "y"}}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 4  # data stays


async def test_the_service_prunes_on_its_own_when_configured(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    await backend.pool.execute(
        "insert into ingest_ledger (dedup_id, kind, state, admitted_at)"
        " values ('ig_msg_ancient', 'message', 'published', now() - interval '90 days')"
    )
    async for _ in open_client(create_app(make_settings(PRUNE_INTERVAL_SECONDS="1"))):
        deadline = time.monotonic() + 10
        while await backend.pool.fetchval("select count(*) from ingest_ledger"):
            assert time.monotonic() < deadline
            await __import__("asyncio").sleep(0.1)


async def test_accounts_with_a_token_are_recorded_at_start_and_a_disconnection_stays(
    make_settings: Callable[..., Settings], backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    settings = make_settings(INSTAGRAM_ACCESS_TOKENS=f"{ACCOUNT}:token-a")
    ctl("accounts", "add", ACCOUNT, "--user-id", "app-user-9")
    await backend.call("ig_deauthorize", {"p_app_user_id": "app-user-9"})
    async for _ in open_client(create_app(settings)):
        pass
    (row,) = await backend.call("ig_list_accounts", {})
    assert (row["account_id"], row["app_user_id"]) == (ACCOUNT, "app-user-9")
    assert row["deauthorized_at"] is not None  # a restart does not reconnect anyone
