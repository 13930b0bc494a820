"""The hand-off through QStash: one published message per turn, the signature headers
forwarded, QStash's retries, its failure callback, and replay without QStash's dedup ID.

The service runs for real (uvicorn), and so does the QStash double, which delivers what it
accepts — events to our consumer, turns to the README's receiver — as QStash does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, QSTASH_CURRENT_KEY
from tests.doubles.qstash import QStashDouble, serve
from tests.meta import signed_headers
from tests.test_turns_flow import until
from tests.turn_kit import RECEIVER_PATH, SECRET, Flaky, delivery, item, load_receiver, now_ms

WEBHOOK = "/api/webhooks/instagram"


@pytest.fixture
def answered() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def receiver(answered: list[dict[str, Any]]) -> Iterator[tuple[Flaky, str]]:
    flaky = Flaky(load_receiver(answered))
    with serve(flaky) as url:
        yield flaky, url + RECEIVER_PATH


@pytest.fixture
def service(
    qstash_settings: Callable[..., Settings],
    qstash: QStashDouble,
    receiver: tuple[Flaky, str],
) -> Iterator[str]:
    settings = qstash_settings(
        TURN_WEBHOOK_URL=receiver[1],
        TURN_WEBHOOK_SECRET=SECRET,
        TURN_QUIET_SECONDS="0.3",
        TURN_MAX_WAIT_SECONDS="3",
    )
    with serve(create_app(settings), lifespan="on") as url:
        qstash.deliver_with(QSTASH_CURRENT_KEY, {PUBLIC_BASE_URL: url})
        yield url


async def send(url: str, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post(WEBHOOK, content=body, headers=signed_headers(body))
        assert response.status_code == 200


def turn_messages(qstash: QStashDouble, destination: str) -> list[Any]:
    return [m for m in qstash.messages if m.destination == destination]


async def states(backend: PostgresBackend) -> list[str]:
    return [r["state"] for r in await backend.pool.fetch("select state from ig_turns order by seq")]


async def test_one_turn_is_one_qstash_message_carrying_the_signature_to_the_bot(
    service: str,
    qstash: QStashDouble,
    receiver: tuple[Flaky, str],
    backend: PostgresBackend,
    answered: list[dict[str, Any]],
) -> None:
    _, url = receiver
    t0 = now_ms()
    burst = [item(f"q{n}", "c1", t0 + n) for n in range(3)]
    await send(service, delivery(burst[1], burst[0]))
    await send(service, delivery(burst[2], burst[1]))
    await until(lambda: _answered(answered, 1))
    (published,) = turn_messages(qstash, url)
    turn = answered[0]
    headers = published.headers
    assert headers["upstash-deduplication-id"] == turn["turn_id"]
    assert headers["upstash-forward-webhook-id"] == turn["turn_id"]
    assert headers["upstash-label"] == "instagram-conversation-turn"
    assert headers["upstash-retry-delay"] == "pow(2, retried) * 10000"
    assert headers["upstash-failure-callback"] == PUBLIC_BASE_URL + "/api/qstash/turn-failures"
    assert not any(h.startswith("upstash-flow-control") for h in headers)
    assert [m["mid"] for m in turn["messages"]] == ["q0", "q1", "q2"]
    await until(lambda: _states_are(backend, ["published"]))
    assert await backend.pool.fetchval(
        "select qstash_message_id from ig_turns") == published.message_id  # fmt: skip
    await asyncio.sleep(0.5)
    assert len(turn_messages(qstash, url)) == 1 and len(answered) == 1


async def _answered(answered: list[Any], n: int) -> bool:
    return len(answered) >= n


async def _states_are(backend: PostgresBackend, wanted: list[str]) -> bool:
    return await states(backend) == wanted


async def test_qstash_giving_up_fails_the_turn_and_a_replay_goes_direct_with_the_same_webhook_id(
    service: str,
    qstash: QStashDouble,
    receiver: tuple[Flaky, str],
    backend: PostgresBackend,
    answered: list[dict[str, Any]],
) -> None:
    from ingest.ops import turns as turn_ops
    from ingest.ops.audit import Actor

    flaky, url = receiver
    flaky.failures = 10**6
    await send(service, delivery(item("f1", "c1", now_ms())))
    await until(lambda: _states_are(backend, ["failed"]))
    attempts = [a for a in qstash.deliveries if a.destination == url]
    assert [a.retried for a in attempts] == [0, 1, 2, 3]
    verifier = Webhook(SECRET)
    for attempt in attempts:  # every retry still carries a valid signature
        verifier.verify(attempt.body, attempt.headers)
    assert {a.headers["webhook-id"] for a in attempts} == {"ig_turn_msg_f1"}
    reason = await backend.pool.fetchval("select reason from ig_turns")
    assert reason == "qstash gave up after status 500"
    flaky.failures = 0
    assert await turn_ops.replay(backend, Actor("test", "cli"), ("failed",)) == 1
    await until(lambda: _answered(answered, 1))
    assert answered[0]["replayed"] is True
    assert flaky.requests[-1][0]["webhook-id"] == "ig_turn_msg_f1"
    assert len(turn_messages(qstash, url)) == 1  # the replay did not go through QStash
    await until(lambda: _states_are(backend, ["delivered"]))


async def test_a_failure_callback_for_another_destination_changes_no_turn(
    service: str, qstash: QStashDouble, receiver: tuple[Flaky, str], backend: PostgresBackend
) -> None:
    from tests.doubles.qstash_signer import sign

    _, url = receiver
    await send(service, delivery(item("g1", "c1", now_ms())))
    await until(lambda: _states_are(backend, ["published"]))
    message_id = await backend.pool.fetchval("select qstash_message_id from ig_turns")
    callback_url = PUBLIC_BASE_URL + "/api/qstash/turn-failures"
    async with httpx.AsyncClient(base_url=service) as http:
        for wrong in ({"url": "https://elsewhere.example/x"}, {"sourceMessageId": "msg_other"}):
            body = httpx.Request("POST", "/", json={
                "status": 500, "sourceMessageId": message_id, "url": url, **wrong,
            }).content  # fmt: skip
            answer = await http.post(
                "/api/qstash/turn-failures",
                content=body,
                headers={"content-type": "application/json",
                         "upstash-signature": sign(body, callback_url, QSTASH_CURRENT_KEY)},
            )  # fmt: skip
            assert answer.status_code == 200 and answer.json()["outcome"] == "ignored"
        unsigned = await http.post("/api/qstash/turn-failures", json={"sourceMessageId": "x"})
        assert unsigned.status_code == 401
    assert await states(backend) == ["published"]
