"""Per-account Graph calls: each account's own token, as `Authorization: Bearer`; a code
190 makes its account `needs_reauth` (its Graph work stops, the console says so) and
its webhooks are still admitted and stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.accounts_kit import (
    ACCOUNT,
    OTHER_ACCOUNT,
    TOKEN_A,
    TOKEN_B,
    account_settings,
    connected,
    eventually,
    message_to,
)
from tests.conftest import open_client, wait_settled
from tests.console import CONSOLE_ENV, sign_in
from tests.doubles.graph_api import GraphApiDouble
from tests.meta import post
from tests.reconcile_kit import reaction_to, thread

CUSTOMER_A, CUSTOMER_B, CUSTOMER_C = "1111111111111111", "2222222222222222", "3333333333333333"
STRANGER_ACCOUNT = "17841400000000009"  # webhooks arrive for it; no token anywhere


def profile_calls(graph: GraphApiDouble) -> dict[str, list[tuple[str | None, bool]]]:
    """Per customer, the token (and whether it came as a Bearer header) of each call."""
    calls: dict[str, list[tuple[str | None, bool]]] = {}
    for call in graph.calls:
        node = call.path.rsplit("/", 1)[-1]
        if node in (CUSTOMER_A, CUSTOMER_B, CUSTOMER_C):
            calls.setdefault(node, []).append((call.token, call.bearer))
    return calls


async def stored(backend: PostgresBackend) -> int:
    value: int = await backend.pool.fetchval("select count(*) from ig_messages")
    return value


async def test_enrichment_of_two_accounts_uses_each_ones_own_token_as_a_bearer(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    graph_online.add_account(OTHER_ACCOUNT, TOKEN_B)
    await connected(backend, ACCOUNT, TOKEN_A)
    await connected(backend, OTHER_ACCOUNT, TOKEN_B)

    async def both_enriched() -> bool:
        n = await backend.pool.fetchval("select count(*) from ig_profiles where username <> ''")
        return bool(n == 2)

    async for client in open_client(create_app(account_settings(make_settings, graph_server))):
        assert (await post(client, message_to(ACCOUNT, "m_a", CUSTOMER_A))).status_code == 200
        assert (await post(client, message_to(OTHER_ACCOUNT, "m_b", CUSTOMER_B))).status_code == 200
        await eventually(both_enriched)
    assert profile_calls(graph_online) == {CUSTOMER_A: [(TOKEN_A, True)],
                                           CUSTOMER_B: [(TOKEN_B, True)]}  # fmt: skip


async def test_a_token_answering_190_makes_its_account_need_reauth_and_its_webhooks_are_still_stored(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    graph_online.add_account(OTHER_ACCOUNT, TOKEN_B)
    await connected(backend, ACCOUNT, TOKEN_A, username="shop_one")
    await connected(backend, OTHER_ACCOUNT, TOKEN_B)
    graph_online.expire(TOKEN_A)  # day 61: "Session has expired", code 190, subcode 0

    async def state() -> str:
        value: str = await backend.pool.fetchval(
            "select state from ig_accounts where account_id = $1", ACCOUNT
        )
        return value

    async def needs_reauth() -> bool:
        return await state() == "needs_reauth"

    settings = account_settings(make_settings, graph_server, **CONSOLE_ENV)
    async for client in open_client(create_app(settings)):
        assert (await post(client, message_to(ACCOUNT, "m_1", CUSTOMER_A))).status_code == 200
        await eventually(needs_reauth)
        for mid, account, customer in (("m_2", ACCOUNT, CUSTOMER_C),
                                       ("m_3", OTHER_ACCOUNT, CUSTOMER_B),
                                       ("m_4", STRANGER_ACCOUNT, CUSTOMER_C)):  # fmt: skip
            assert (await post(client, message_to(account, mid, customer))).status_code == 200
        assert await wait_settled(backend) == {"direct": 4}

        async def other_enriched() -> bool:
            return CUSTOMER_B in profile_calls(graph_online)

        await eventually(other_enriched)
        await sign_in(client)
        page = (await client.get("/console")).text
    assert await stored(backend) == 4  # every webhook stored, the dead token's too
    assert profile_calls(graph_online) == {
        CUSTOMER_A: [(TOKEN_A, True)],  # one call, answered 190; none after it
        CUSTOMER_B: [(TOKEN_B, True)],  # the other account goes on
    }
    row = await backend.pool.fetchrow("select * from ig_accounts where account_id = $1", ACCOUNT)
    assert row is not None
    assert (row["state"], row["last_error_code"]) == ("needs_reauth", 190)
    assert 'id="reauth-17841400000000001"' in page
    assert "@shop_one</strong>" in page and "needs re-authorisation" in page
    assert "Reconnect</button>" in page
    assert 'id="reauth-17841400000000002"' not in page


async def test_a_reconnect_from_the_console_gives_a_fresh_authorisation_link(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str], backend: PostgresBackend,
) -> None:  # fmt: skip
    settings = account_settings(make_settings, graph_server, **CONSOLE_ENV)
    async for client in open_client(create_app(settings)):
        csrf = await sign_in(client)
        shown = await client.post("/console/accounts/connect", data={"csrf_token": csrf})
        forged = await client.post("/console/accounts/connect", data={"csrf_token": "x"})
    assert shown.status_code == 200
    assert (
        'id="connect-link" href="https://www.instagram.com/oauth/authorize?client_id=' in shown.text
    )
    assert forged.status_code == 403
    audit = await backend.pool.fetchval("select count(*) from ingest_audit where action = $1",
                                        "accounts.connect")  # fmt: skip
    assert audit == 1


async def test_the_missing_message_fetch_uses_the_connected_accounts_token_until_a_190(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    messages = thread(4)
    graph_online.add_conversation(ACCOUNT, messages)
    await connected(backend, ACCOUNT, TOKEN_A)
    settings = account_settings(make_settings, graph_server, RECONCILE_GRACE_SECONDS="0.2")

    async def fetched(mid: str) -> bool:
        return bool(graph_online.bearers(f"/{mid}"))

    async for client in open_client(create_app(settings)):
        assert (await post(client, reaction_to(messages[0].mid))).status_code == 200
        await eventually(lambda: fetched(messages[0].mid))
        graph_online.expire(TOKEN_A)
        assert (await post(client, reaction_to(messages[1].mid))).status_code == 200
        await eventually(lambda: fetched(messages[1].mid))

        async def needs_reauth() -> bool:
            state = await backend.pool.fetchval("select state from ig_accounts")
            return bool(state == "needs_reauth")

        await eventually(needs_reauth)
        assert (await post(client, reaction_to(messages[2].mid))).status_code == 200
        await asyncio.sleep(0.5)  # past the grace: nothing is fetched for a dead token
        await wait_settled(backend)
    assert graph_online.bearers(f"/{messages[0].mid}") == [TOKEN_A]
    assert not await fetched(messages[2].mid)
    stored = await backend.pool.fetchval("select count(*) from ig_reactions")
    assert stored == 3  # every reaction stored, the dead token's too
