"""The QStash consumer on real PostgreSQL: signed deliveries in, rows out, table-driven errors."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from consumers.errors import NON_RETRYABLE_HEADER, PERMANENT, TABLE, respond
from consumers.signature import SignatureWrongKey
from contracts import EVENT_ADAPTER, Event, event_to_json
from contracts.http import BodyTooLarge
from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.edge.parser import parse_delivery
from storage import DataRejected, StorageUnavailable
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, QSTASH_CURRENT_KEY, QSTASH_NEXT_KEY, open_client
from tests.doubles.qstash_signer import delivery_headers

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
PATH = "/api/qstash/instagram-ingestion"
FAILURES = "/api/qstash/failures"


def fixture_events(name: str) -> list[Event]:
    return parse_delivery(json.loads((FIXTURES / f"{name}.json").read_text()))


async def deliver(
    client: httpx.AsyncClient, body: bytes, *, key: str = QSTASH_CURRENT_KEY, path: str = PATH
) -> httpx.Response:
    headers = delivery_headers(body, PUBLIC_BASE_URL + path, key)
    return await client.post(path, content=body, headers=headers)


async def test_every_event_kind_is_stored(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    names = json.loads((FIXTURES / "expected_kinds.json").read_text())
    kinds, mids = set(), set()
    for name in sorted(names):
        for event in fixture_events(name):
            response = await deliver(client, event_to_json(event))
            assert response.status_code == 200, (name, response.text)
            kinds.add(str(event.kind))
            mids.add(getattr(event, "mid", None) if event.kind == "message" else None)
    assert len(kinds) == 9
    assert await backend.pool.fetchval(
        "select count(*) from ig_messages where not is_placeholder"  # edits of unseen mids
    ) == len(mids - {None})
    assert await backend.pool.fetchval("select count(*) from ig_reactions") >= 1
    stored = await backend.pool.fetch("select distinct kind from ig_events")
    # message_edit: an edit with num_edit 0 and no text marks nothing edited; it is kept here
    assert {r["kind"] for r in stored} == {
        "read", "postback", "referral", "change", "unsupported", "message_edit",
    }  # fmt: skip


async def test_every_event_delivered_twice_is_stored_once(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    events = fixture_events("batch_several_items") + fixture_events("postback_icebreaker")
    for event in events:
        first = await deliver(client, event_to_json(event))
        again = await deliver(client, event_to_json(event), key=QSTASH_NEXT_KEY)
        assert first.json()["status"] == "stored"
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    assert await backend.pool.fetchval("select count(*) from ig_events") == 2
    assert (
        await backend.pool.fetchval(
            "select messages_in from ig_profiles where igsid = '1234567890123456'"
        )
        == 1
    )


async def _final_state(backend: PostgresBackend) -> list[dict[str, Any]]:
    rows = await backend.pool.fetch(
        "select mid, text, edit_count, deleted_at is not null as deleted, is_placeholder,"
        " attachments, direction from ig_messages order by mid"
    )
    reactions = await backend.pool.fetch("select mid, sender_id, action, emoji from ig_reactions")
    return [dict(r) for r in rows] + [dict(r) for r in reactions]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_out_of_order_message_edit_and_reaction_converge(
    make_settings: Callable[..., Settings], database_url: str, order: tuple[int, ...]
) -> None:
    message, reaction, _read, edit, _unsend = fixture_events("batch_several_items")
    events = [message, edit, reaction]
    async for client in open_client(create_app(make_settings())):
        for index in order:
            assert (await deliver(client, event_to_json(events[index]))).status_code == 200
    backend = PostgresBackend(database_url)
    await backend.open()
    try:
        state = await _final_state(backend)
    finally:
        await backend.close()
    assert state[0]["text"] == "first!"
    assert state[0]["edit_count"] == 1
    assert state[0]["is_placeholder"] is False
    assert state[1]["emoji"] == "❤️"


@pytest.mark.parametrize("unsend_first", [True, False])
async def test_unsend_clears_content_whatever_the_order(
    client: httpx.AsyncClient, backend: PostgresBackend, unsend_first: bool
) -> None:
    message, *_, unsend = fixture_events("batch_several_items")
    order = [unsend, message] if unsend_first else [message, unsend]
    for event in order:
        assert (await deliver(client, event_to_json(event))).status_code == 200
    row = await backend.pool.fetchrow("select text, raw, deleted_at from ig_messages")
    assert row is not None
    assert row["text"] is None
    assert row["raw"] is None
    assert row["deleted_at"] is not None


async def test_older_edit_never_overwrites_a_newer_one(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    (edit,) = fixture_events("edit")
    newer = edit.model_copy(update={"num_edit": 2, "text": "second edit"})
    for event in (newer, edit):
        await deliver(client, event_to_json(event))
    assert await backend.pool.fetchval("select text from ig_messages") == "second edit"


async def test_database_down_is_500_and_the_retry_stores_it(
    client: httpx.AsyncClient, backend: PostgresBackend, pg_server: Any
) -> None:
    (event,) = fixture_events("text_message")
    body = event_to_json(event)
    pg_server.stop()
    try:
        down = await deliver(client, body)
    finally:
        pg_server.start()
    assert down.status_code == 500
    assert down.json()["status"] == "retry"
    retried = await deliver(client, body)
    assert retried.status_code == 200
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"v":3,"kind":"message","account_id":"1","mid":"m","raw":{}}',
        b'{"v":1,"kind":"teleport","account_id":"1","raw":{}}',
        b'{"v":1,"kind":"message","account_id":"1","raw":{}}',
        b"[1,2,3]",
        b"not json",
    ],
)
async def test_contract_violation_is_489_non_retryable(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await deliver(client, body)
    assert response.status_code == 489
    assert response.headers[NON_RETRYABLE_HEADER] == "true"
    assert response.json()["status"] == "rejected"


async def test_permanent_status_can_be_a_plain_400(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(CONSUMER_PERMANENT_STATUS="400"))
    async for client in open_client(app):
        response = await deliver(client, b'{"v":7}')
        assert response.status_code == 400
        assert NON_RETRYABLE_HEADER not in response.headers


async def test_bad_signature_is_401(client: httpx.AsyncClient, backend: PostgresBackend) -> None:
    (event,) = fixture_events("text_message")
    response = await deliver(client, event_to_json(event), key="sig_wrong")
    assert response.status_code == 401
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 0


async def test_token_for_the_failure_url_is_refused_on_the_delivery_url(
    client: httpx.AsyncClient,
) -> None:
    body = event_to_json(fixture_events("text_message")[0])
    headers = delivery_headers(body, PUBLIC_BASE_URL + FAILURES, QSTASH_CURRENT_KEY)
    response = await client.post(PATH, content=body, headers=headers)
    assert response.status_code == 401


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    body = event_to_json(fixture_events("text_message")[0])
    headers = {**delivery_headers(body, PUBLIC_BASE_URL + PATH, QSTASH_CURRENT_KEY)}
    headers["Content-Type"] = "text/plain"
    assert (await client.post(PATH, content=body, headers=headers)).status_code == 415


async def test_failure_callback_records_a_dead_letter_and_fails_the_ledger_row(
    client: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    (event,) = fixture_events("text_message")
    await backend.call(
        "ingest_admit",
        {"p_events": [event.model_dump(mode="json")]},
    )
    # as the relay leaves it: published as msg_1 (a callback about another message changes
    # nothing: tests/test_failure_callback_attacks.py)
    await backend.pool.execute(
        "update ingest_ledger set state = 'published', qstash_message_id = 'msg_1'"
    )
    callback = {
        "status": 500,
        "header": {"Content-Type": ["application/json"]},
        "body": base64.b64encode(b'{"status":"retry"}').decode(),
        "retried": 3,
        "maxRetries": 3,
        "dlqId": "dlq_1",
        "sourceMessageId": "msg_1",
        "url": PUBLIC_BASE_URL + PATH,
        "method": "POST",
        "sourceBody": base64.b64encode(event_to_json(event)).decode(),
        "createdAt": 1732500000000,
    }
    body = json.dumps(callback).encode()
    response = await deliver(client, body, path=FAILURES)
    assert response.status_code == 200
    again = await deliver(client, body, path=FAILURES)
    assert again.json()["outcome"] == "duplicate"
    row = await backend.pool.fetchrow("select * from dead_letters")
    assert row is not None
    assert (row["dlq_id"], row["last_status"], row["dedup_id"]) == ("dlq_1", 500, event.dedup_id)
    ledger = await backend.pool.fetchrow("select state, event from ingest_ledger")
    assert ledger is not None
    assert ledger["state"] == "failed"
    assert ledger["event"]["mid"] == event.mid  # kept for `ingestctl replay`


def _validation_error() -> ValidationError:
    try:
        EVENT_ADAPTER.validate_json(b'{"v": 3}')
    except ValidationError as exc:
        return exc
    raise AssertionError("a v2 event must not validate")


EXAMPLES: dict[type[BaseException], BaseException] = {
    SignatureWrongKey: SignatureWrongKey("x"),
    BodyTooLarge: BodyTooLarge("x"),
    DataRejected: DataRejected("check violated", sqlstate="23514"),
    StorageUnavailable: StorageUnavailable("down", retry_after=7),
    TimeoutError: TimeoutError(),
    ValidationError: _validation_error(),
}


@pytest.mark.parametrize("rule", TABLE, ids=lambda r: r.failure.__name__)
def test_error_table_answers_as_written(rule: Any) -> None:
    exc = EXAMPLES.get(rule.failure) or rule.failure("x")
    for permanent in (489, 400):
        response = respond(exc, permanent)
        expected = permanent if rule.status == PERMANENT else rule.status
        assert response.status_code == expected
        assert json.loads(response.body)["status"] == rule.word
        non_retryable = response.headers.get(NON_RETRYABLE_HEADER)
        assert (non_retryable == "true") is (expected == 489)


def test_retry_after_is_sent_when_known() -> None:
    response = respond(StorageUnavailable("busy", retry_after=6.2), 489)
    assert response.status_code == 500
    assert response.headers["Retry-After"] == "7"


def test_unknown_failure_is_retryable() -> None:
    assert respond(RuntimeError("bug"), 489).status_code == 500


@pytest.mark.parametrize("body", [b"\x00", b"not json", b"[1]"])
async def test_failure_callback_that_is_not_a_json_object_is_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await deliver(client, body, path=FAILURES)
    assert response.status_code == 400
