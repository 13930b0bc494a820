"""`/api/webhooks/instagram` as Meta meets it, against a recording sink."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from contracts import Event
from ingest.config.env import settings_from_env
from ingest.config.settings import Settings
from ingest.delivery.acceptance import Acceptance, NotAccepted
from ingest.edge import webhook
from tests.conftest import BASE_ENV, VERIFY_TOKEN
from tests.meta import sign, signed_headers, wire_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
URL = webhook.PATH


class RecordingSink:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.deliveries: list[list[Event]] = []
        self.fail = fail

    async def accept(self, events: Sequence[Event]) -> Acceptance:
        if self.fail is not None:
            raise self.fail
        self.deliveries.append(list(events))
        return Acceptance(new=len(events))


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


def _settings(**overrides: str) -> Settings:
    return settings_from_env({**BASE_ENV, "DATABASE_URL": "postgresql://x/y", **overrides}, None)


async def _client(sink: RecordingSink, **overrides: str) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=webhook.routes(webhook.Webhook(_settings(**overrides), sink, None)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def client(sink: RecordingSink) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(sink):
        yield c


def fixture_bytes(name: str) -> bytes:
    return wire_bytes(json.loads((FIXTURES / f"{name}.json").read_text()))


# --- handshake -------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge_as_plain_text(client: httpx.AsyncClient) -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    response = await client.get(URL, params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "c"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "c"},
        {"hub.mode": "subscribe", "hub.challenge": "c"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        {},
    ],
)
async def test_handshake_refuses_anything_else_without_echoing(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(URL, params=params)
    assert response.status_code == 403
    assert response.json() == {"status": "forbidden", "error": "verification failed"}
    assert "c" not in response.json().values()


# --- deliveries ------------------------------------------------------------------------


async def test_signed_delivery_is_handed_to_the_sink_and_acknowledged(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    body = fixture_bytes("batch_several_items")
    response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert response.json()["events"] == 5
    (events,) = sink.deliveries
    assert [str(e.kind) for e in events] == [
        "message", "reaction", "read", "message_edit", "message_unsend",
    ]  # fmt: skip


async def test_unicode_delivery_signed_over_escaped_wire_bytes_is_accepted(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    body = fixture_bytes("rtl_zwj_long_text")
    assert b"\\u" in body
    response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert "👨\u200d👩\u200d👧\u200d👦" in sink.deliveries[0][0].text  # type: ignore[union-attr]


async def test_all_unsupported_delivery_still_gets_200(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    body = fixture_bytes("optin_unknown")
    response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert [str(e.kind) for e in sink.deliveries[0]] == ["unsupported"]


async def test_empty_messaging_array_is_acknowledged(
    client: httpx.AsyncClient, sink: RecordingSink
) -> None:
    body = fixture_bytes("empty_messaging")
    response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert response.json()["events"] == 0


async def test_missing_signature_is_401(client: httpx.AsyncClient, sink: RecordingSink) -> None:
    body = fixture_bytes("text_message")
    response = await client.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert "missing" in response.json()["error"]
    assert sink.deliveries == []


async def test_wrong_signature_is_401(client: httpx.AsyncClient, sink: RecordingSink) -> None:
    body = fixture_bytes("text_message")
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, "nope")}
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 401
    assert sink.deliveries == []


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    body = fixture_bytes("text_message")
    headers = {**signed_headers(body), "Content-Type": "text/plain"}
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 415


async def test_json_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    body = fixture_bytes("text_message")
    headers = {**signed_headers(body), "Content-Type": "application/json; charset=utf-8"}
    response = await client.post(URL, content=body, headers=headers)
    assert response.status_code == 200


async def test_oversized_body_is_413_before_any_hashing(sink: RecordingSink) -> None:
    async for client in _client(sink, MAX_BODY_BYTES="64"):
        body = fixture_bytes("text_message")
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": "garbage"}
        response = await client.post(URL, content=body, headers=headers)
        assert response.status_code == 413  # not 401: the size check comes first


async def test_oversized_streamed_body_without_length_is_413(sink: RecordingSink) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 32

    async for client in _client(sink, MAX_BODY_BYTES="64"):
        response = await client.post(
            URL, content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 413


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b""])
async def test_signed_but_not_json_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 400
    assert response.json()["status"] == "bad_request"


@pytest.mark.parametrize("body", [b"[]", b"42", b'{"object":"instagram"}', b'{"entry":{}}'])
async def test_signed_json_that_is_no_envelope_is_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 400


async def test_sink_not_accepting_means_503_so_meta_redelivers() -> None:
    sink = RecordingSink(fail=NotAccepted("database down"))
    async for client in _client(sink):
        body = fixture_bytes("text_message")
        response = await client.post(URL, content=body, headers=signed_headers(body))
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"


async def test_unexpected_sink_failure_is_503_never_500() -> None:
    sink = RecordingSink(fail=RuntimeError("bug"))
    async for client in _client(sink):
        body = fixture_bytes("text_message")
        response = await client.post(URL, content=body, headers=signed_headers(body))
        assert response.status_code == 503
