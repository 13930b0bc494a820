"""The whole flow on the embedded default: no QStash token, events processed in-process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from storage.postgres import PostgresBackend
from tests.conftest import wait_settled
from tests.meta import signed_headers, wire_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
URL = "/api/webhooks/instagram"


def body_of(name: str) -> bytes:
    return wire_bytes(json.loads((FIXTURES / f"{name}.json").read_text()))


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post(URL, content=body, headers=signed_headers(body))


async def test_message_is_stored_and_acknowledged(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    response = await post(client, body_of("text_message"))
    assert response.status_code == 200
    assert response.json()["new"] == 1
    assert await wait_settled(backend) == {"direct": 1}
    row = await backend.pool.fetchrow("select text, direction, sender_id from ig_messages")
    assert row is not None
    assert dict(row) == {
        "text": "Hi! Is the blue one still available? 💙",
        "direction": "in",
        "sender_id": "1234567890123456",
    }
    ledger = await backend.pool.fetchrow("select state, event from ingest_ledger")
    assert ledger is not None
    assert ledger["state"] == "direct"
    assert ledger["event"] is None  # the text lives on only in ig_messages


async def test_meta_redelivering_a_message_stores_it_once(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    body = body_of("text_message")
    answers = await asyncio.gather(*(post(client, body) for _ in range(5)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["new"] for a in answers) == 1
    assert sum(a.json()["duplicate"] for a in answers) == 4
    await wait_settled(backend)
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    assert await backend.pool.fetchval("select messages_in from ig_profiles") == 1


async def test_every_fixture_is_stored_without_error(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    expected = json.loads((FIXTURES / "expected_kinds.json").read_text())
    for name in sorted(expected):
        response = await post(client, body_of(name))
        assert response.status_code == 200, (name, response.text)
    await wait_settled(backend)
    others = await backend.pool.fetchval("select count(*) from ig_events")
    assert others > 0
    states = await backend.pool.fetch("select distinct state from ingest_ledger")
    assert {r["state"] for r in states} == {"direct"}


async def test_database_down_means_503_for_meta(
    client: httpx.AsyncClient, backend: PostgresBackend, pg_server
) -> None:  # type: ignore[no-untyped-def]
    pg_server.stop()
    try:
        response = await post(client, body_of("text_message"))
        assert response.status_code == 503
    finally:
        pg_server.start()
    response = await post(client, body_of("text_message"))
    assert response.status_code == 200
    await wait_settled(backend)
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_nul_characters_are_stored_as_replacement_characters_not_refused(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    payload = json.loads((FIXTURES / "text_message.json").read_text())
    payload["entry"][0]["messaging"][0]["message"]["text"] = "nul\x00here"
    payload["entry"][0]["messaging"].append({"\x00": None})
    response = await post(client, wire_bytes(payload))
    assert response.status_code == 200
    await wait_settled(backend)
    assert await backend.pool.fetchval("select text from ig_messages") == "nul\ufffdhere"
    raw = await backend.pool.fetchval("select event->'raw' from ig_events")
    assert raw == {"\ufffd": None}
