"""What the privacy tests share: a customer with a history, the phrase search, Meta's
signed requests, and `ingestctl` run as a real process against a test's database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from contracts import event_to_json
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV, META_SECRET, PUBLIC_BASE_URL, wait_settled
from tests.meta import post, wire_bytes
from tests.processes import INGESTCTL
from tests.test_consumer import deliver

ACCOUNT = "17841400000000001"
CUSTOMER = "5550000000000001"
OTHER = "5550000000000002"
PHRASE = "my secret phrase 4711"


def message(
    mid: str, sender: str, text: str, *, echo: bool = False, ts: int | None = None
) -> bytes:
    body: dict[str, Any] = {"mid": mid, "text": text}
    if echo:
        body["is_echo"] = True
    customer = sender if not echo else CUSTOMER
    item = {
        "sender": {"id": ACCOUNT if echo else sender},
        "recipient": {"id": customer if echo else ACCOUNT},
        "timestamp": ts or int(time.time() * 1000) - 60_000,
        "message": body,
    }
    return wire_bytes({"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [item]}]})


def reaction(mid: str, sender: str) -> bytes:
    item = {
        "sender": {"id": sender}, "recipient": {"id": ACCOUNT},
        "timestamp": int(time.time() * 1000) - 30_000,
        "reaction": {"mid": mid, "action": "react", "reaction": "love", "emoji": "❤️"},
    }  # fmt: skip
    return wire_bytes({"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": [item]}]})


def ingestctl(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [INGESTCTL, *args], env={**clean, **BASE_ENV, "DATABASE_URL": database_url},
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def found_anywhere(backend: PostgresBackend, phrase: str) -> list[str]:
    """Every text or jsonb column of every table in `public` that holds `phrase`."""
    columns = await backend.pool.fetch(
        "select table_name, column_name from information_schema.columns"
        " where table_schema = 'public' and data_type in ('text', 'jsonb', 'json',"
        " 'character varying', 'ARRAY')"
    )
    hits = []
    for column in columns:
        count = await backend.pool.fetchval(
            f'select count(*) from public."{column["table_name"]}"'
            f' where "{column["column_name"]}"::text like $1',
            f"%{phrase}%",
        )
        if count:
            hits.append(f"{column['table_name']}.{column['column_name']}")
    return hits


async def a_customer_with_history(client: httpx.AsyncClient, backend: PostgresBackend) -> None:
    """Messages both ways, a reaction, an edit, a read; a dead letter; a held event."""
    for n in range(3):
        await post(client, message(f"m_c{n}", CUSTOMER, f"{PHRASE} #{n}"))
    await post(client, message("m_reply", ACCOUNT, f"re: {PHRASE}", echo=True))
    await post(client, reaction("m_reply", CUSTOMER))
    await post(client, message("m_other", OTHER, "another customer, kept"))
    await wait_settled(backend)
    (event,) = parse_delivery(json.loads(message("m_dlq", CUSTOMER, f"{PHRASE} (dead)")))
    callback = {
        "status": 500, "retried": 3, "dlqId": "dlq_9", "sourceMessageId": "msg_9",
        "url": PUBLIC_BASE_URL + "/api/qstash/instagram-ingestion",
        "body": base64.b64encode(b'{"status":"retry"}').decode(),
        "sourceBody": base64.b64encode(event_to_json(event)).decode(),
    }  # fmt: skip
    assert (
        await deliver(client, json.dumps(callback).encode(), path="/api/qstash/failures")
    ).status_code == 200
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True}
    )
    await post(client, message("m_held", CUSTOMER, f"{PHRASE} (held)"))
    await wait_settled(backend)
    await backend.call("ingest_set_kill_switch", {"p_active": False, "p_reason": None, "p_by": "t"})
    assert await found_anywhere(backend, PHRASE)  # before: everywhere


def signed_request(payload: dict[str, Any], secret: str = META_SECRET) -> str:
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    signature = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(signature).decode().rstrip("=") + "." + encoded


async def callback(client: httpx.AsyncClient, path: str, value: str) -> httpx.Response:
    return await client.post(path, data={"signed_request": value})


def request_for(user_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "algorithm": "HMAC-SHA256",
        "issued_at": int(time.time()),
        "user_id": user_id,
        **overrides,
    }
