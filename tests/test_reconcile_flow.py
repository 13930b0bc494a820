"""Reconcile end to end: Meta's webhooks (some lost) → the service → QStash double →
consumer → PostgreSQL, and the Graph double (a real HTTP server) for what was lost.

Each recovered message is admitted like a webhook's: stored once, published at most
once, whichever of the webhook and reconcile comes first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from contracts import event_from_json
from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.ops.reconcile import run_reconcile
from storage.postgres import PostgresBackend
from tests.conftest import PUBLIC_BASE_URL, QSTASH_CURRENT_KEY, open_client, wait_settled
from tests.doubles.graph_api import GraphApiDouble, Message
from tests.doubles.qstash_signer import delivery_headers
from tests.meta import post
from tests.reconcile_kit import (
    ACCOUNT,
    CUSTOMER,
    OTHER_ACCOUNT,
    TOKEN_A,
    TOKEN_B,
    reaction_to,
    thread,
    webhook_for,
)

HOUR = 3600.0


def settings_for(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str], **env: str
) -> Settings:
    _, graph_url = graph_server
    defaults = {"INSTAGRAM_ACCESS_TOKENS": f"{ACCOUNT}:{TOKEN_A}", "RECONCILE_GRACE_SECONDS": "0"}
    return qstash_settings(GRAPH_API_URL=graph_url, **{**defaults, **env})


def published_items(qstash: Any) -> list[dict[str, Any]]:
    """Every message the relay asked QStash to publish, duplicates included."""
    return [item for r in qstash.requests if r.path == "/v2/batch" for item in json.loads(r.body)]


async def forward(client: httpx.AsyncClient, qstash: Any, start: int) -> list[str]:
    """Play QStash for the messages it accepted from `start` on; return their mids."""
    mids = []
    for message in qstash.messages[start:]:
        path = message.destination.removeprefix(PUBLIC_BASE_URL)
        headers = delivery_headers(message.body, message.destination, QSTASH_CURRENT_KEY)
        assert (await client.post(path, content=message.body, headers=headers)).status_code == 200
        mids.append(event_from_json(message.body).mid)  # type: ignore[union-attr]
    return mids


async def stored(backend: PostgresBackend) -> dict[str, str]:
    rows = await backend.pool.fetch("select mid, origin from ig_messages")
    return {r["mid"]: r["origin"] for r in rows}


async def deliver(
    client: httpx.AsyncClient, backend: PostgresBackend, messages: list[Message]
) -> list[dict[str, Any]]:
    answers = [(await post(client, webhook_for(m))).json() for m in messages]
    await wait_settled(backend)
    return answers


async def test_a_thread_of_5_with_2_delivered_gets_the_3_missing_stored_and_published_once(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, qstash: Any, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    messages = thread(5)
    graph_online.add_conversation(ACCOUNT, messages)
    settings = settings_for(qstash_settings, graph_server)
    async for client in open_client(create_app(settings)):
        await deliver(client, backend, [messages[1], messages[3]])  # the webhooks that came
        assert await forward(client, qstash, 0) == [messages[1].mid, messages[3].mid]

        (summary,), _ = await run_reconcile(settings, backend, HOUR)
        await wait_settled(backend)
        assert (summary.recovered, summary.already_stored, summary.messages_seen) == (3, 2, 5)
        assert len(published_items(qstash)) == 2 + 3
        recovered = await forward(client, qstash, 2)
        assert sorted(recovered) == sorted(m.mid for m in messages[0::2])
        assert await stored(backend) == {
            m.mid: "webhook" if i in (1, 3) else "reconcile" for i, m in enumerate(messages)
        }

        (again,), settled = await run_reconcile(settings, backend, HOUR)  # run again
        await wait_settled(backend)
        assert (again.recovered, again.already_stored, settled) == (0, 5, {})
        assert len(published_items(qstash)) == 5  # 0 published
        assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 5  # 0 stored
        assert len(await stored(backend)) == 5


async def test_a_webhook_arriving_after_reconcile_is_a_duplicate_one_row_one_publish(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, qstash: Any, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    messages = thread(5)
    graph_online.add_conversation(ACCOUNT, messages)
    settings = settings_for(qstash_settings, graph_server)
    async for client in open_client(create_app(settings)):
        await deliver(client, backend, [messages[1], messages[3]])
        await run_reconcile(settings, backend, HOUR)
        await wait_settled(backend)
        await forward(client, qstash, 0)
        late = await deliver(client, backend, [messages[0], messages[4]])  # Meta's redelivery
        assert [(a["new"], a["duplicate"]) for a in late] == [(0, 1), (0, 1)]
        assert len(published_items(qstash)) == 5
        rows = await backend.pool.fetch(
            "select mid, origin, count(*) over (partition by mid) n from ig_messages"
        )
        assert len(rows) == 5 and all(r["n"] == 1 for r in rows)
        assert {r["origin"] for r in rows if r["mid"] == messages[0].mid} == {"reconcile"}


async def test_a_token_error_stops_only_its_account(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, qstash: Any, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    graph_online.add_account(OTHER_ACCOUNT, TOKEN_B)
    graph_online.add_conversation(ACCOUNT, thread(3))
    graph_online.add_conversation(OTHER_ACCOUNT, thread(4, number=2, account=OTHER_ACCOUNT))
    graph_online.revoke(TOKEN_B)  # Meta answers 190 with HTTP 400
    settings = settings_for(
        qstash_settings, graph_server,
        INSTAGRAM_ACCESS_TOKENS=f"{ACCOUNT}:{TOKEN_A},{OTHER_ACCOUNT}:{TOKEN_B}",
    )  # fmt: skip
    summaries, settled = await run_reconcile(settings, backend, HOUR)
    by_account = {s.account_id: s for s in summaries}
    assert (by_account[ACCOUNT].outcome, by_account[ACCOUNT].recovered) == ("done", 3)
    stopped = by_account[OTHER_ACCOUNT]
    assert (stopped.outcome, stopped.recovered, stopped.errors) == ("token_rejected", 0, {"190": 1})
    assert len([c for c in graph_online.calls if c.account is None]) == 1  # one call, then stop
    assert settled == {"published": 3}
    status = await backend.call("ig_reconcile_status", {})
    assert {r["account_id"]: r["last_outcome"] for r in status} == {
        ACCOUNT: "done", OTHER_ACCOUNT: "token_rejected",
    }  # fmt: skip


async def test_the_service_reconciles_on_its_own_schedule_and_counts_it(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, qstash: Any, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    graph_online.add_conversation(ACCOUNT, thread(3))
    settings = settings_for(
        qstash_settings, graph_server, RECONCILE_INTERVAL_SECONDS="1", METRICS_PUBLIC="true"
    )
    async for client in open_client(create_app(settings)):
        for _ in range(200):
            if await backend.pool.fetchval("select last_outcome from ig_reconcile_accounts"):
                break
            await asyncio.sleep(0.05)
        assert await wait_settled(backend) == {"published": 3}
        metrics = (await client.get("/metrics")).text
    assert 'ingest_reconcile_recovered_total{via="scan"} 3.0' in metrics
    assert 'ingest_reconcile_runs_total{outcome="done"}' in metrics


async def test_a_reaction_naming_a_message_we_lack_fetches_it_after_the_grace(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, qstash: Any, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    messages = thread(3)
    graph_online.add_conversation(ACCOUNT, messages)
    settings = settings_for(qstash_settings, graph_server, RECONCILE_GRACE_SECONDS="0.3")
    async for client in open_client(create_app(settings)):
        await deliver(client, backend, [messages[1]])
        reaction = reaction_to(messages[0].mid)
        for _ in range(3):  # Meta repeats itself: one fetch all the same
            assert (await post(client, reaction)).status_code == 200
        await post(client, reaction_to(messages[1].mid))  # one we have: nothing to fetch
        assert graph_online.calls == []  # the webhook never waits for the Graph API
        recovered = f"ig_msg_{messages[0].mid}"
        for _ in range(100):  # the grace, the fetch, the admission
            if await backend.pool.fetchval(
                "select count(*) from ingest_ledger where dedup_id = $1", recovered
            ):
                break
            await asyncio.sleep(0.05)
        states = await wait_settled(backend)
        await forward(client, qstash, 0)
    fetched = [c.path.rsplit("/", 1)[-1] for c in graph_online.calls]
    assert [n for n in fetched if n != CUSTOMER] == [messages[0].mid]  # and the profile's
    assert states == {"published": 4}  # message 1, the two reactions, and message 0
    assert (await stored(backend))[messages[0].mid] == "reconcile"


async def test_a_message_arriving_within_the_grace_is_not_fetched(
    qstash_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, qstash: Any, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    messages = thread(2)
    graph_online.add_conversation(ACCOUNT, messages)
    settings = settings_for(qstash_settings, graph_server, RECONCILE_GRACE_SECONDS="1")
    async for client in open_client(create_app(settings)):
        await post(client, reaction_to(messages[0].mid))  # the reaction overtook its message
        await deliver(client, backend, [messages[0]])
        await asyncio.sleep(1.5)
        await wait_settled(backend)
    assert graph_online.calls == []
