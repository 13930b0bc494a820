"""The safety gate on turns: the kill switch (plain: direct, no QStash; --hold: held until
replay), the daily QStash budget counting turn messages, and per-customer turn limits."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ingest.config.settings import SafetyLimits
from ingest.config.turns import TurnSettings, signing_key
from ingest.ops import kill_switch
from ingest.ops import turns as turn_ops
from ingest.ops.audit import Actor
from ingest.turns.relay import TurnRelay, TurnRelayConfig
from ingest.turns.transport import DirectSender, TurnPublisher
from storage.postgres import PostgresBackend
from tests.doubles.qstash import TOKEN, QStashDouble
from tests.turn_kit import FAST, SECRET, message_event

BOT = "https://bot.example/turns"
OPERATOR = Actor("test", "cli")


class Bot:
    """The downstream, in-process (httpx's mock transport): records every turn."""

    def __init__(self) -> None:
        self.turns: list[dict[str, Any]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.turns.append(json.loads(request.content))
        return httpx.Response(204)


@pytest.fixture
def bot() -> Bot:
    return Bot()


@pytest.fixture
async def relay(
    backend: PostgresBackend, bot: Bot, qstash: QStashDouble, qstash_server: tuple[Any, str]
) -> AsyncIterator[TurnRelay]:
    keys = (signing_key(SECRET),)
    turns = TurnSettings(BOT, (), **FAST)  # type: ignore[arg-type]
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(bot.handler)) as to_bot,
        httpx.AsyncClient() as to_qstash,
    ):
        publisher = TurnPublisher(
            to_qstash, qstash_url=qstash_server[1], token=TOKEN, destination=BOT,
            failure_callback="https://ingest.example.test/api/qstash/turn-failures", keys=keys,
        )  # fmt: skip
        made = TurnRelay(
            backend,
            turns,
            SafetyLimits(daily_messages=5),
            direct=DirectSender(to_bot, BOT, keys),
            publisher=publisher,
            config=TurnRelayConfig(),
        )
        await made.configure()
        yield made


async def burst(backend: PostgresBackend, customer: str, n: int = 2) -> None:
    for k in range(n):
        await backend.call(
            "ig_apply_event", {"p_event": message_event(f"{customer}_{k}", customer)}
        )
    await backend.pool.execute("update ig_turns set due_at = now() where state = 'open'")


async def by_state(backend: PostgresBackend) -> dict[str, int]:
    rows = await backend.pool.fetch("select state, count(*) n from ig_turns group by 1")
    return {r["state"]: r["n"] for r in rows}


async def test_the_holding_kill_switch_hands_off_nothing_and_a_replay_sends_each_turn_once(
    backend: PostgresBackend, relay: TurnRelay, bot: Bot, qstash: QStashDouble
) -> None:
    await kill_switch.activate(backend, OPERATOR, "incident", hold=True)
    for customer in ("c1", "c2", "c3"):
        await burst(backend, customer)
    await relay.drain()
    assert await by_state(backend) == {"held": 3}
    assert bot.turns == [] and qstash.messages == []
    with pytest.raises(turn_ops.TurnReplayRefused, match="kill switch"):
        await turn_ops.replay(backend, OPERATOR, ("held",))
    await kill_switch.deactivate(backend, OPERATOR)
    assert await turn_ops.replay(backend, OPERATOR, ("held",)) == 3
    await relay.drain()
    await relay.drain()
    assert sorted(t["customer_id"] for t in bot.turns) == ["c1", "c2", "c3"]
    assert all(t["replayed"] for t in bot.turns)
    assert qstash.messages == []  # replays go direct, never under a dedup ID QStash holds
    assert await by_state(backend) == {"delivered": 3}


async def test_the_plain_kill_switch_delivers_turns_directly_without_qstash(
    backend: PostgresBackend, relay: TurnRelay, bot: Bot, qstash: QStashDouble
) -> None:
    await kill_switch.activate(backend, OPERATOR, "cost", hold=False)
    await burst(backend, "c1")
    await relay.drain()
    assert len(bot.turns) == 1 and qstash.messages == []
    row = await backend.pool.fetchrow("select state, route, reason from ig_turns")
    assert row is not None and dict(row) == {
        "state": "delivered", "route": "direct", "reason": "kill_switch"}  # fmt: skip


async def test_turn_messages_count_against_the_daily_budget_and_beyond_it_go_direct(
    backend: PostgresBackend, relay: TurnRelay, bot: Bot, qstash: QStashDouble
) -> None:
    await burst(backend, "c1", n=3)  # 3 of the day's 5
    await relay.drain()
    await burst(backend, "c2", n=3)  # would make 6
    await relay.drain()
    assert len(qstash.messages) == 1 and len(bot.turns) == 1
    spent = await backend.pool.fetchval("select messages from qstash_spend")
    assert spent == 3
    rows = await backend.pool.fetch("select customer_id, state, reason from ig_turns order by 1")
    assert [tuple(r) for r in rows] == [
        ("c1", "published", None), ("c2", "delivered", "daily_limit")]  # fmt: skip


async def test_a_customer_past_the_turn_limit_is_limited_visible_and_replayable(
    backend: PostgresBackend, relay: TurnRelay, bot: Bot, qstash: QStashDouble
) -> None:
    await backend.call("ingest_turn_configure", {"p_settings": {**FAST, "hourly_limit": 1}})
    await burst(backend, "c1")
    await relay.drain()
    await backend.call("ig_apply_event", {"p_event": message_event("c1_late", "c1")})
    await backend.pool.execute("update ig_turns set due_at = now() where state = 'open'")
    await relay.drain()
    listing = await turn_ops.listing(backend, state="limited")
    (limited,) = listing["turns"]
    assert (limited["seq"], limited["reason"], limited["mids"]) == (
        2, "turn_hourly_limit", ["c1_late"])  # fmt: skip
    assert listing["counts"] == {"published": 1, "limited": 1}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 3
    assert await turn_ops.replay(backend, OPERATOR, ("limited",)) == 1
    await relay.drain()
    assert [t["seq"] for t in bot.turns] == [2]
