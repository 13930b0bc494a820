"""Connecting an account in one step: authorisation URL → callback → tokens → stored
encrypted → subscribed; and every way the callback refuses (replayed or forged state,
a denial, a missing permission, a refused code), each with a page and a sentence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ingest.accounts.cipher import TokenCipher
from ingest.app import create_app
from ingest.config.connect_env import decode_key
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.accounts_kit import ACCOUNT, CALLBACK, KEY, account_env, account_settings
from tests.conftest import PUBLIC_BASE_URL, open_client
from tests.doubles.graph_api import GraphApiDouble
from tests.doubles.graph_oauth import APP_ID
from tests.test_cli import ctl  # noqa: F401 - the fixture


def state_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def callback(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get(CALLBACK, params=params)


async def test_connect_walks_from_the_authorisation_url_to_a_stored_encrypted_subscribed_account(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, ctl: Callable[..., Any],  # noqa: F811
) -> None:  # fmt: skip
    settings = account_settings(make_settings, graph_server)
    graph_online.oauth.redirect_uri = f"{PUBLIC_BASE_URL}{CALLBACK}"
    printed = ctl("accounts", "connect", **account_env(graph_server))
    assert printed.returncode == 0, printed.stderr
    url = printed.stdout.splitlines()[0]
    query = state_of(url)
    assert url.startswith("https://www.instagram.com/oauth/authorize?")
    assert (query["client_id"], query["redirect_uri"], query["response_type"]) == (
        APP_ID, f"{PUBLIC_BASE_URL}{CALLBACK}", "code",
    )  # fmt: skip
    assert query["scope"] == "instagram_business_basic,instagram_business_manage_messages"
    code = graph_online.oauth.authorize(ACCOUNT, "shop_one")  # the person allows
    async for client in open_client(create_app(settings)):
        page = await callback(client, code=code, state=query["state"])
        again = await callback(client, code=code, state=query["state"])
    assert page.status_code == 200, page.text
    assert "Connected @shop_one (account 17841400000000001)" in page.text
    short, long = graph_online.oauth.issued
    row = await backend.pool.fetchrow("select * from ig_accounts where account_id = $1", ACCOUNT)
    assert row is not None
    assert (row["source"], row["username"], row["state"], row["app_user_id"]) == (
        "instagram_login", "shop_one", "active", f"app_scoped_{ACCOUNT}",
    )  # fmt: skip
    assert abs(row["expires_at"] - (datetime.now(UTC) + timedelta(days=60))) < timedelta(minutes=1)
    assert long not in row["token_ciphertext"] and row["token_ciphertext"].startswith("v1.")
    assert TokenCipher((decode_key(KEY),)).decrypt(row["token_ciphertext"], ACCOUNT) == long
    (subscribed,) = graph_online.oauth.subscribed
    assert subscribed[0] == ACCOUNT and "messages" in subscribed[1].split(",")
    (subscribe,) = [c for c in graph_online.calls if c.path.endswith("/subscribed_apps")]
    assert (subscribe.token, subscribe.bearer) == (long, True)
    assert short not in page.text and long not in page.text
    assert again.status_code == 403 and "already used" in again.text  # a replayed state


async def test_a_forged_or_replayed_state_connects_nothing(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    app = create_app(account_settings(make_settings, graph_server))
    async for client in open_client(app):
        connector = app.state.accounts.connector
        state = state_of(await connector.authorization_url())["state"]
        nonce, expires, signature = state.split(".")
        forged = f"{nonce}.{expires}.{signature[::-1]}"
        later = f"{nonce}.{int(expires) + 3600}.{signature}"  # a longer life, same signature
        code = graph_online.oauth.authorize(ACCOUNT, "shop_one")
        answers = [await callback(client, code=code, state=s) for s in (forged, later, "x.y.z")]
        assert [a.status_code for a in answers] == [403, 403, 400]
        assert "not issued by this service" in answers[0].text
        ok = await callback(client, code=code, state=state)  # the real one still works, once
        assert ok.status_code == 200
        replayed = await callback(client, code=code, state=state)
    assert replayed.status_code == 403
    assert await backend.pool.fetchval("select count(*) from ig_accounts") == 1
    assert len(graph_online.oauth.subscribed) == 1


async def test_a_denial_a_missing_permission_or_a_refused_code_is_a_page_with_a_sentence(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    app = create_app(account_settings(make_settings, graph_server))
    connector = app.state.accounts.connector

    async def fresh() -> str:
        return state_of(await connector.authorization_url())["state"]

    async for client in open_client(app):
        denied = await callback(client, error="access_denied", error_reason="user_denied",
                                error_description="Permissions error", state=await fresh())  # fmt: skip
        basic_only = graph_online.oauth.authorize(
            ACCOUNT, "shop_one", permissions="instagram_business_basic"
        )
        partial = await callback(client, code=basic_only, state=await fresh())
        unknown = await callback(client, code="AQ-not-a-code", state=await fresh())
        no_code = await callback(client, state=await fresh())
    assert (denied.status_code, partial.status_code, unknown.status_code) == (403, 403, 400)
    assert "not allowed on Instagram" in denied.text
    assert "instagram_business_manage_messages was not granted" in partial.text
    assert "refused the authorisation code" in unknown.text
    assert no_code.status_code == 400
    for answer in (denied, partial, unknown, no_code):
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["cache-control"] == "no-store"
    assert await backend.pool.fetchval("select count(*) from ig_accounts") == 0


async def test_without_an_app_id_or_a_key_there_is_no_connect_flow(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    ctl: Callable[..., Any],  # noqa: F811
) -> None:  # fmt: skip
    settings = account_settings(make_settings, graph_server, INSTAGRAM_APP_ID=None)  # type: ignore[arg-type]
    async for client in open_client(create_app(settings)):
        answer = await callback(client, code="c", state="s.1.x")
    assert answer.status_code == 404 and "not configured" in answer.text
    env = account_env(graph_server)
    del env["TOKEN_ENCRYPTION_KEY"]
    refused = ctl("accounts", "connect", **env)
    assert refused.returncode == 2 and "TOKEN_ENCRYPTION_KEY" in refused.stderr
