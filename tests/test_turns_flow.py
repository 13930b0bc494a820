"""The hand-off end to end, direct path (no QStash): Meta's webhook → stored → turn →
the README's own receiver, verifying with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import open_client
from tests.doubles.qstash import serve
from tests.meta import post
from tests.turn_kit import (
    ACCOUNT,
    RECEIVER_PATH,
    SECRET,
    Flaky,
    delivery,
    item,
    load_receiver,
    now_ms,
)


@pytest.fixture
def answered() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def receiver(answered: list[dict[str, Any]]) -> Iterator[tuple[Flaky, str]]:
    flaky = Flaky(load_receiver(answered))
    with serve(flaky) as url:
        yield flaky, url + RECEIVER_PATH


@pytest.fixture
def turn_settings(
    make_settings: Callable[..., Settings], receiver: tuple[Flaky, str]
) -> Callable[..., Settings]:
    def make(**overrides: str | None) -> Settings:
        return make_settings(
            TURN_WEBHOOK_URL=receiver[1],
            TURN_WEBHOOK_SECRET=SECRET,
            TURN_QUIET_SECONDS="0.3",
            TURN_MAX_WAIT_SECONDS="3",
            **overrides,
        )

    return make


@pytest.fixture
async def service(turn_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(create_app(turn_settings())):
        yield client


async def until(check: Callable[[], Any], within: float = 8.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition never met"
        await asyncio.sleep(0.05)


async def turn_states(backend: PostgresBackend) -> list[str]:
    return [r["state"] for r in await backend.pool.fetch("select state from ig_turns order by seq")]


async def test_a_burst_delivered_out_of_order_and_twice_reaches_the_bot_once_in_order(
    service: httpx.AsyncClient, backend: PostgresBackend, answered: list[dict[str, Any]]
) -> None:
    t0 = now_ms()
    burst = [item(f"mid{n}", "c1", t0 + n, text) for n, text in enumerate(["hi", "red?", "price?"])]
    for b in (burst[2], burst[0], burst[2], burst[1], burst[0]):
        assert (await post(service, delivery(b))).status_code == 200
    await until(lambda: _done(backend, 1))
    (turn,) = answered
    assert [m["mid"] for m in turn["messages"]] == ["mid0", "mid1", "mid2"]
    assert [m["text"] for m in turn["messages"]] == ["hi", "red?", "price?"]
    assert (turn["seq"], turn["customer_id"], turn["account_id"]) == (1, "c1", ACCOUNT)
    assert turn["type"] == "instagram.conversation.turn" and turn["replayed"] is False
    assert turn["business_replied_after"] is None
    # the business (or its bot) replies: its echo opens no turn and calls nobody
    await post(service, delivery(item("echo1", "c1", now_ms(), "red, 20 EUR", echo=True)))
    await asyncio.sleep(0.6)
    assert len(answered) == 1
    assert await turn_states(backend) == ["delivered"]


async def _done(backend: PostgresBackend, n: int) -> bool:
    states = await turn_states(backend)
    return len(states) == n and all(s in ("delivered", "failed") for s in states)


async def test_a_downstream_failing_twice_gets_one_turn_with_one_webhook_id_and_valid_signatures(
    service: httpx.AsyncClient,
    backend: PostgresBackend,
    receiver: tuple[Flaky, str],
    answered: list[dict[str, Any]],
) -> None:
    flaky, _ = receiver
    flaky.failures = 2
    await backend.pool.execute("select 1")  # the service is up
    await post(service, delivery(item("m1", "c1", now_ms())))
    await until(lambda: _done(backend, 1), within=15)
    assert await turn_states(backend) == ["delivered"]
    assert len(flaky.requests) == 3 and len(answered) == 1
    verifier = Webhook(SECRET)
    ids = set()
    for headers, body in flaky.requests:
        verifier.verify(body, headers)  # raises unless signed with our secret, in time
        ids.add(headers["webhook-id"])
    assert ids == {answered[0]["turn_id"]}
    row = await backend.pool.fetchrow("select attempts, route from ig_turns")
    assert row is not None and dict(row) == {"attempts": 3, "route": "direct"}


async def test_a_downstream_down_for_good_fails_the_turn_and_a_replay_delivers_it(
    turn_settings: Callable[..., Settings],
    backend: PostgresBackend,
    receiver: tuple[Flaky, str],
    answered: list[dict[str, Any]],
) -> None:
    from ingest.config.turns import signing_key
    from ingest.ops import turns as turn_ops
    from ingest.ops.audit import Actor
    from ingest.turns.relay import TurnRelay, TurnRelayConfig
    from ingest.turns.transport import DirectSender
    from tests.turn_kit import message_event

    flaky, url = receiver
    flaky.failures = 10**6
    settings = turn_settings()
    assert settings.turns is not None
    async with httpx.AsyncClient(timeout=5) as http:
        relay = TurnRelay(
            backend,
            settings.turns,
            settings.safety,
            direct=DirectSender(http, url, (signing_key(SECRET),)),
            publisher=None,
            config=TurnRelayConfig(backoff_seconds=0.05, max_attempts=3),
        )
        await relay.configure()
        await backend.call("ig_apply_event", {"p_event": message_event("m1", "c1")})

        async def settled() -> bool:
            await relay.run_pass()
            return await _done(backend, 1)

        await until(settled)
        assert await turn_states(backend) == ["failed"]
        assert len(flaky.requests) == 3 and answered == []
        flaky.failures = 0
        assert await turn_ops.replay(backend, Actor("test", "cli"), ("failed",)) == 1
        await until(settled)
    (turn,) = answered
    assert turn["replayed"] is True and turn["turn_id"] == flaky.requests[-1][0]["webhook-id"]
    assert await turn_states(backend) == ["delivered"]


async def test_the_hand_off_body_follows_the_turn_v1_schema(
    service: httpx.AsyncClient, backend: PostgresBackend, answered: list[dict[str, Any]]
) -> None:
    import jsonschema

    from contracts.schema import SCHEMA_PATH

    schema = json.loads((SCHEMA_PATH.parent / "turn.v1.json").read_text())
    await post(service, delivery(item("m1", "c1", now_ms(), "hello")))
    await until(lambda: _done(backend, 1))
    jsonschema.validate(answered[0], schema, format_checker=jsonschema.FormatChecker())
