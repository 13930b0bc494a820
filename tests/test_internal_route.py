"""`POST /api/internal/ingest-event`: the producer for other services."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import INTERNAL_TOKEN, open_client, wait_settled

PATH = "/api/internal/ingest-event"
AUTH = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
EXAMPLE: dict[str, Any] = {
    "v": 1,
    "kind": "message",
    "account_id": "17841400000000001",
    "sender_id": "1234567890123456",
    "mid": "m_internal_1",
    "text": "from another service",
    "raw": {},
}


async def test_one_event_is_accepted(client: httpx.AsyncClient, backend: PostgresBackend) -> None:
    response = await client.post(PATH, json=EXAMPLE, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["new"] == 1
    await wait_settled(backend)
    assert await backend.pool.fetchval("select text from ig_messages") == "from another service"


async def test_a_list_is_accepted_and_duplicates_cost_nothing(client: httpx.AsyncClient) -> None:
    response = await client.post(PATH, json=[EXAMPLE, EXAMPLE], headers=AUTH)
    assert response.json()["events"] == 2
    assert (response.json()["new"], response.json()["duplicate"]) == (1, 1)


async def test_callers_dedup_id_is_ignored(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await client.post(PATH, json={**EXAMPLE, "dedup_id": "ig_msg_somethingelse"}, headers=AUTH)
    assert (
        await backend.pool.fetchval("select dedup_id from ingest_ledger")
        == "ig_msg_m-5Finternal-5F1"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": INTERNAL_TOKEN},
        {"Authorization": ""},
    ],
)
async def test_wrong_or_missing_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(PATH, json=EXAMPLE, headers=headers)
    assert response.status_code == 401


async def test_no_token_configured_refuses_everything(
    make_settings: Callable[..., Settings],
) -> None:
    async for client in open_client(
        create_app(make_settings(INTERNAL_API_TOKEN=None, APP_ENV="production"))
    ):
        response = await client.post(PATH, json=EXAMPLE, headers=AUTH)
        assert response.status_code == 401


async def test_invalid_event_is_422_with_where_and_what(client: httpx.AsyncClient) -> None:
    response = await client.post(
        PATH, json={**EXAMPLE, "mid": None, "text": "secret text"}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["loc"].startswith("message.mid")
    assert "secret text" not in response.text


async def test_unknown_version_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(PATH, json={**EXAMPLE, "v": 3}, headers=AUTH)
    assert response.status_code == 422


async def test_not_json_is_400_and_wrong_type_is_415(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        PATH, content=b"{", headers={**AUTH, "Content-Type": "application/json"}
    )
    plain = await client.post(PATH, content=b"{}", headers={**AUTH, "Content-Type": "text/plain"})
    assert (bad.status_code, plain.status_code) == (400, 415)


async def test_every_contract_example_is_accepted(client: httpx.AsyncClient) -> None:
    examples = sorted((Path(__file__).parent.parent / "contracts" / "examples").glob("*.json"))
    assert len(examples) == 9
    for path in examples:
        response = await client.post(PATH, json=json.loads(path.read_text()), headers=AUTH)
        assert response.status_code == 200, path.name
