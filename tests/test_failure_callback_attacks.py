"""Signed failure callbacks that try to do more than report a failure (issue 23, items 4-6).

A callback is recorded, but changes a ledger row only when it is about what we published
(its `sourceMessageId` is the row's QStash message id, its `url` our delivery URL, its
body's dedup ID the row's); one that can never be recorded is permanent (489), not 500;
one without `dlqId` counts once.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from consumers.errors import NON_RETRYABLE_HEADER
from contracts import Event, event_to_json
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL
from tests.test_consumer import FAILURES, PATH, deliver, fixture_events

OURS = PUBLIC_BASE_URL + PATH


def failure_callback(event: Event, **fields: Any) -> dict[str, Any]:
    return {
        "status": 500, "retried": 3, "maxRetries": 3, "dlqId": "dlq_1",
        "sourceMessageId": "msg_real", "url": OURS, "method": "POST",
        "body": base64.b64encode(b'{"status":"retry"}').decode(),
        "sourceBody": base64.b64encode(event_to_json(event)).decode(),
        "createdAt": 1732500000000, **fields,
    }  # fmt: skip


async def a_published_and_stored_event(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> Event:
    """A message the relay published as `msg_real` and the consumer stored."""
    (event,) = fixture_events("text_message")
    await backend.call("ingest_admit", {"p_events": [event.model_dump(mode="json")]})
    await backend.pool.execute(
        "update ingest_ledger set state = 'published', qstash_message_id = 'msg_real'"
    )
    assert (await deliver(client, event_to_json(event))).status_code == 200
    return event


# --- item 4 ------------------------------------------------------------------------------------


FORGED = {  # what a signed callback claims, where it is not about what we published
    "foreign url, unknown message": {"url": "https://attacker.example/hook",
                                     "sourceMessageId": "msg_unknown"},
    "unknown message": {"url": OURS, "sourceMessageId": "msg_unknown"},
    "foreign url": {"url": "https://attacker.example/hook", "sourceMessageId": "msg_real"},
    "url variant": {"url": OURS + "?x=1", "sourceMessageId": "msg_real"},
}  # fmt: skip


async def test_a_signed_failure_callback_cannot_rewrite_a_stored_event(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    event = await a_published_and_stored_event(client, backend)
    injected = event.model_copy(update={"text": "injected by a forged callback"})
    for n, (name, forged) in enumerate(FORGED.items()):
        callback = failure_callback(injected, **forged, dlqId=f"dlq_forged_{n}")
        answer = await deliver(client, json.dumps(callback).encode(), path=FAILURES)
        assert answer.status_code == 200, name
        assert answer.json()["outcome"] == "unmatched", name
        row = await backend.pool.fetchrow("select state, event from ingest_ledger")
        assert row is not None and row["state"] == "published", name
        assert "injected" not in json.dumps(row["event"]), name
    assert await backend.pool.fetchval("select count(*) from dead_letters") == len(FORGED)
    replayed = await backend.call("ingest_replay", {"p_states": ["failed"], "p_dry_run": True})
    assert replayed["would_replay"] == 0  # `replay --failed` has nothing to store


async def test_a_failure_callback_about_our_own_message_fails_its_row(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    event = await a_published_and_stored_event(client, backend)
    answer = await deliver(client, json.dumps(failure_callback(event)).encode(), path=FAILURES)
    assert answer.json()["outcome"] == "stored"
    assert await backend.pool.fetchval("select state from ingest_ledger") == "failed"


async def test_the_match_is_one_sql_rule_for_anything_we_publish(backend: PostgresBackend) -> None:
    letter = {"source_message_id": "m1", "url": "https://a/x", "destinations": ["https://a/x"],
              "source_body": {"dedup_id": "d1"}}  # fmt: skip
    matches = "select ingest_callback_matches($1::jsonb, $2, $3)"
    assert await backend.pool.fetchval(matches, letter, "m1", "d1") is True
    for message_id, dedup_id in (("m2", "d1"), ("m1", "d2"), (None, "d1")):
        assert await backend.pool.fetchval(matches, letter, message_id, dedup_id) is False
    elsewhere = {**letter, "url": "https://b/x"}
    assert await backend.pool.fetchval(matches, elsewhere, "m1", "d1") is False


# --- item 5 ------------------------------------------------------------------------------------


async def test_a_failure_callback_nested_100000_deep_is_permanent(
    client: httpx.AsyncClient,
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"dlqId": ' + deep + b"}"):
        answer = await deliver(client, body, path=FAILURES)
        assert answer.status_code == 489
        assert answer.headers[NON_RETRYABLE_HEADER] == "true"


async def test_a_deeply_nested_source_body_is_kept_as_undecodable(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    (event,) = fixture_events("text_message")
    deep = base64.b64encode(b"[" * 100_000 + b"]" * 100_000).decode()
    callback = {**failure_callback(event), "sourceBody": deep}
    answer = await deliver(client, json.dumps(callback).encode(), path=FAILURES)
    assert answer.status_code == 200
    kept = await backend.pool.fetchval("select source_body from dead_letters")
    assert "undecodable" in kept


# --- item 6 ------------------------------------------------------------------------------------


async def test_replays_of_a_failure_callback_without_dlq_id_are_one_letter(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    (event,) = fixture_events("text_message")
    callback = failure_callback(event)
    del callback["dlqId"]
    body = json.dumps(callback).encode()
    outcomes = [(await deliver(client, body, path=FAILURES)).json()["outcome"] for _ in range(10)]
    assert outcomes.count("duplicate") == 9
    assert await backend.pool.fetchval("select count(*) from dead_letters") == 1
    later = json.dumps({**callback, "createdAt": callback["createdAt"] + 1}).encode()
    assert (await deliver(client, later, path=FAILURES)).json()["outcome"] != "duplicate"


async def test_a_failure_callback_that_cannot_be_told_from_its_replays_is_refused(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    (event,) = fixture_events("text_message")
    callback = failure_callback(event)
    del callback["dlqId"], callback["createdAt"]
    answer = await deliver(client, json.dumps(callback).encode(), path=FAILURES)
    assert answer.status_code == 489
    assert "dlqId" in answer.json()["error"]
    assert await backend.pool.fetchval("select count(*) from dead_letters") == 0
