"""Erasure at its edges: late failure callbacks, rows kept as text, a store racing the
erasure, odd items, the account's audit trail, and input an operator can get wrong.

Each was a gap a review found (supabase/migrations/20261202800000_erasure_gaps.sql).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import subprocess
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from contracts import event_to_json
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, wait_settled
from tests.meta import post, wire_bytes
from tests.privacy_kit import (
    ACCOUNT,
    CUSTOMER,
    PHRASE,
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


def failure_callback(event_json: bytes, dlq_id: str) -> bytes:
    return json.dumps({
        "status": 500, "retried": 3, "dlqId": dlq_id, "sourceMessageId": "msg_" + dlq_id,
        "url": PUBLIC_BASE_URL + "/api/qstash/instagram-ingestion",
        "body": base64.b64encode(b'{"status":"retry"}').decode(),
        "sourceBody": base64.b64encode(event_json).decode(),
    }).encode()  # fmt: skip


async def refused_by_the_ledger(backend: PostgresBackend, mid: str) -> None:
    """A constraint makes the ledger refuse the event: `ingest_admit_each` keeps it as a
    `failed` row holding only its text (no sender, no account columns)."""
    await backend.pool.execute(
        "alter table ingest_ledger add constraint poison"
        f" check (sender_id is distinct from '{CUSTOMER}')"
    )
    (event,) = parse_delivery(json.loads(message(mid, CUSTOMER, f"{PHRASE} refused")))
    answer = await backend.call("ingest_admit", {"p_events": [event.model_dump(mode="json")]})
    assert answer["failed"] == [event.dedup_id]
    await backend.pool.execute("alter table ingest_ledger drop constraint poison")
    assert await found_anywhere(backend, PHRASE) == ["ingest_ledger.event_text"]


def with_an_impossible_time(mid: str) -> bytes:
    item = {"sender": {"id": CUSTOMER}, "recipient": {"id": ACCOUNT},
            "timestamp": 10**17,  # past the contract's bound: kept whole as `unsupported`
            "message": {"mid": mid, "text": f"{PHRASE} odd"}}  # fmt: skip
    return wire_bytes({"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [item]}]})


async def test_a_failure_callback_after_the_erasure_brings_nothing_back(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    await post(client, message("m_c0", CUSTOMER, f"{PHRASE} #0"))
    await wait_settled(backend)
    (event,) = parse_delivery(json.loads(message("m_c0", CUSTOMER, f"{PHRASE} #0")))
    assert ctl("forget", CUSTOMER, "--yes").returncode == 0
    row = "select state, event from ingest_ledger where dedup_id = $1"
    settled = dict(await backend.pool.fetchrow(row, event.dedup_id))
    assert settled == {"state": "direct", "event": None}  # settled, its payload gone
    late = failure_callback(event_to_json(event), "dlq_late")
    answer = await deliver(client, late, path="/api/qstash/failures")
    assert (answer.status_code, answer.json()["outcome"]) == (200, "erased")
    assert dict(await backend.pool.fetchrow(row, event.dedup_id)) == settled  # not `failed`
    assert await found_anywhere(backend, PHRASE) == []
    assert await backend.pool.fetchval("select count(*) from dead_letters") == 1  # its ids only


async def test_forget_finds_a_row_the_ledger_kept_only_as_text(
    backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    await refused_by_the_ledger(backend, "m_refused")
    assert ctl("forget", CUSTOMER, "--yes").returncode == 0
    assert await found_anywhere(backend, PHRASE) == []


async def test_the_data_deletion_callback_finds_a_row_the_ledger_kept_only_as_text(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    assert ctl("accounts", "add", ACCOUNT, "--user-id", "app-user-7").returncode == 0
    await refused_by_the_ledger(backend, "m_refused")
    answer = await callback(
        client, "/api/meta/data-deletion", signed_request(request_for("app-user-7"))
    )
    assert answer.status_code == 200
    assert await found_anywhere(backend, PHRASE) == []


async def test_a_message_stored_while_the_erasure_runs_is_erased_too(
    client: httpx.AsyncClient, backend: PostgresBackend, database_url: str
) -> None:
    """A QStash delivery commits while `forget` is under way: the erasure waits for it."""
    await post(client, message("m_first", CUSTOMER, "first"))
    await wait_settled(backend)
    (event,) = parse_delivery(json.loads(message("m_race", CUSTOMER, f"{PHRASE} race")))
    consumer, eraser = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        storing = consumer.transaction()
        await storing.start()
        stored = await consumer.fetchval(
            "select ig_apply_event($1::jsonb)", event_to_json(event).decode()
        )
        assert json.loads(stored)["outcome"] == "stored"
        erasing = asyncio.create_task(eraser.fetchval("select ig_forget($1)", CUSTOMER))
        await asyncio.sleep(0.3)
        assert not erasing.done()  # it waits for the store in flight
        await storing.commit()
        await erasing
    finally:
        await consumer.close()
        await eraser.close()
    assert await found_anywhere(backend, PHRASE) == []


async def test_an_item_with_an_impossible_time_keeps_its_sender_and_so_is_erased(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    await post(client, with_an_impossible_time("m_odd"))
    await wait_settled(backend)
    assert ctl("forget", CUSTOMER, "--yes").returncode == 0
    assert await found_anywhere(backend, PHRASE) == []
    (late,) = parse_delivery(json.loads(with_an_impossible_time("m_odd2")))
    assert (late.kind, late.sender_id, late.timestamp) == ("unsupported", CUSTOMER, None)
    assert (await deliver(client, event_to_json(late))).json()["status"] == "erased"


async def test_erasing_an_account_scrubs_audit_details_naming_its_customers(
    client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    assert ctl("accounts", "add", ACCOUNT, "--user-id", "app-user-7").returncode == 0
    await post(client, message("m_c0", CUSTOMER, f"{PHRASE} #0"))
    await wait_settled(backend)
    assert ctl("kill-switch", "activate", f"spam from {CUSTOMER}", "--by", "ops").returncode == 0
    assert ctl("kill-switch", "deactivate", "--by", "ops").returncode == 0
    await callback(client, "/api/meta/data-deletion", signed_request(request_for("app-user-7")))
    details = await backend.pool.fetch("select detail::text as detail from ingest_audit")
    assert details and not [d for d in details if CUSTOMER in d["detail"]]


@pytest.mark.parametrize("igsid", ["", "  ", ACCOUNT])
async def test_forget_refuses_an_empty_id_or_a_business_account(
    igsid: str, client: httpx.AsyncClient, backend: PostgresBackend, ctl: Callable[..., Any]
) -> None:
    assert ctl("accounts", "add", ACCOUNT).returncode == 0
    await post(client, message("m_reply", ACCOUNT, "a reply to a customer", echo=True))
    await wait_settled(backend)
    refused = ctl("forget", igsid, "--yes")
    assert refused.returncode == 1
    assert ("an IGSID is required" if not igsid.strip() else "is a business account") in (
        refused.stderr
    )
    assert await backend.pool.fetchval("select count(*) from ig_tombstones") == 0
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
