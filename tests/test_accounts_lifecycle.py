"""An account's life: reconcile with its own token until a 190; Meta's deauthorize deletes
the token and a connect restores it; environment tokens revive an account only when they
change; keys rotate; a Facebook Page token is read from stdin and its Page subscribed."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest.accounts.cipher import TokenCipher
from ingest.accounts.registry import Registry
from ingest.app import create_app
from ingest.config.connect_env import decode_key
from ingest.config.settings import Settings
from ingest.ops.reconcile import run_reconcile
from storage.postgres import PostgresBackend
from tests.accounts_kit import (
    ACCOUNT,
    CALLBACK,
    KEY,
    NEW_KEY,
    OTHER_ACCOUNT,
    TOKEN_A,
    TOKEN_B,
    account_env,
    account_settings,
    connected,
    eventually,
    ingestctl,
)
from tests.conftest import BASE_ENV, open_client
from tests.console import CONSOLE_ENV, sign_in
from tests.doubles.graph_api import GraphApiDouble
from tests.privacy_kit import callback, request_for, signed_request
from tests.reconcile_kit import thread
from tests.test_cli import INGESTCTL

HOUR = 3600.0
PAGE = "1122334455"
PAGE_TOKEN = "EAAGpage-token-0123456789-secretpart"


async def state_of(backend: PostgresBackend) -> dict[str, Any]:
    (row,) = [r for r in await Registry(backend).overview() if r["account_id"] == ACCOUNT]
    return row


async def test_reconcile_reads_a_connected_account_with_its_own_token_until_a_190(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    graph_online.add_conversation(ACCOUNT, thread(3))
    await connected(backend, ACCOUNT, TOKEN_A)
    settings = account_settings(make_settings, graph_server)
    (first,), _ = await run_reconcile(settings, backend, HOUR, relay=False)
    assert (first.account_id, first.outcome, first.recovered) == (ACCOUNT, "done", 3)
    assert {(c.token, c.bearer) for c in graph_online.calls} == {(TOKEN_A, True)}
    graph_online.expire(TOKEN_A)
    (second,), _ = await run_reconcile(settings, backend, HOUR, relay=False)
    assert second.outcome == "token_rejected"
    assert (await state_of(backend))["state"] == "needs_reauth"
    calls = len(graph_online.calls)
    third, _ = await run_reconcile(settings, backend, HOUR, relay=False)
    assert (third, len(graph_online.calls)) == ([], calls)  # no hammering a dead token


async def test_deauthorize_deletes_the_token_and_a_connect_makes_the_account_active_again(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    cipher = TokenCipher((decode_key(KEY),))
    await Registry(backend).connect(
        ACCOUNT, source="instagram_login", ciphertext=cipher.encrypt(TOKEN_A, ACCOUNT),
        key_id=cipher.current, now=datetime.now(UTC), expires_in=86_400,
        app_user_id=f"app_scoped_{ACCOUNT}",
    )  # fmt: skip
    app = create_app(account_settings(make_settings, graph_server, **CONSOLE_ENV))
    book = app.state.accounts.book
    async for client in open_client(app):
        await sign_in(client)
        assert book.credential(ACCOUNT) is not None
        answer = await callback(client, "/api/meta/deauthorize",
                                signed_request(request_for(f"app_scoped_{ACCOUNT}")))  # fmt: skip
        assert answer.status_code == 200
        await book.load()
        assert book.credential(ACCOUNT) is None
        gone = await backend.pool.fetchrow(
            "select * from ig_accounts where account_id = $1", ACCOUNT
        )
        assert gone is not None and gone["token_ciphertext"] is None
        assert (await state_of(backend))["state"] == "deauthorized"
        section = (await client.get("/console/accounts")).text
        assert 'id="reauth-17841400000000001"' in section and "its token was deleted" in section
        url = await app.state.accounts.connector.authorization_url()
        state = parse_qs(urlsplit(url).query)["state"][0]
        code = graph_online.oauth.authorize(ACCOUNT, "shop_one")
        assert (
            await client.get(CALLBACK, params={"code": code, "state": state})
        ).status_code == 200
        assert book.credential(ACCOUNT) is not None
    back = await state_of(backend)
    assert back["state"] == "active"
    assert back["reconnected_at"] > back["added_at"] and back["deauthorized_at"] is None


async def test_an_unchanged_environment_token_never_revives_an_account_and_a_changed_one_does(
    make_settings: Callable[..., Settings],
    backend: PostgresBackend,
) -> None:
    async def start(token: str) -> Any:
        app = create_app(make_settings(INSTAGRAM_ACCESS_TOKENS=f"{ACCOUNT}:{token}"))
        async for _ in open_client(app):
            pass
        return app.state.accounts.book

    assert (await start(TOKEN_A)).credential(ACCOUNT).token.reveal() == TOKEN_A
    assert (await state_of(backend))["source"] == "environment"
    await Registry(backend).graph_error(ACCOUNT, 190, reauth=True)
    assert (await start(TOKEN_A)).credential(ACCOUNT) is None
    assert (await state_of(backend))["state"] == "needs_reauth"
    assert (await start(TOKEN_B)).credential(ACCOUNT).token.reveal() == TOKEN_B
    assert (await state_of(backend))["state"] == "active"
    row = await backend.pool.fetchrow("select * from ig_accounts where account_id = $1", ACCOUNT)
    assert row is not None and row["token_ciphertext"] is None  # environment tokens stay there


async def test_rotate_key_re_encrypts_every_token_so_the_old_key_can_go(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    backend: PostgresBackend, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await connected(backend, ACCOUNT, TOKEN_A, key=KEY)
    settings = account_settings(
        make_settings, graph_server, TOKEN_ENCRYPTION_KEY=f"{NEW_KEY},{KEY}"
    )
    code, printed = await ingestctl(settings, capsys, "accounts", "rotate-key", "--json",
                                    "--by", "alice")  # fmt: skip
    assert (code, json.loads(printed)["rekeyed"]) == (0, 1)
    row = await backend.pool.fetchrow("select * from ig_accounts where account_id = $1", ACCOUNT)
    assert row is not None
    assert TokenCipher((decode_key(NEW_KEY),)).decrypt(row["token_ciphertext"], ACCOUNT) == TOKEN_A
    again = json.loads((await ingestctl(settings, capsys, "accounts", "rotate-key", "--json"))[1])
    assert (again["rekeyed"], again["current"]) == (0, 1)
    audit = await backend.pool.fetch("select actor from ingest_audit where action = $1",
                                     "accounts.rotate-key")  # fmt: skip
    assert len(audit) == 2 and "alice" in {r["actor"] for r in audit}


def add_page(
    database_url: str, env: dict[str, str], token: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run(
        [INGESTCTL, "accounts", "add", "--page-token", "--page-id", PAGE, "--json"],
        env={**clean, **BASE_ENV, "DATABASE_URL": database_url, **env},
        cwd=Path(__file__).parent, input=token + "\n", capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


async def test_a_page_token_is_read_from_stdin_stored_encrypted_and_its_page_subscribed(
    graph_server: tuple[Any, str], graph_online: GraphApiDouble, backend: PostgresBackend,
    database_url: str,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, PAGE_TOKEN, PAGE)
    graph_online.oauth.pages[PAGE] = ACCOUNT
    env = account_env(graph_server)
    done = add_page(database_url, env, PAGE_TOKEN)
    assert done.returncode == 0, done.stderr
    assert PAGE_TOKEN not in done.stdout + done.stderr
    row = await backend.pool.fetchrow("select * from ig_accounts where account_id = $1", ACCOUNT)
    assert row is not None
    assert (row["source"], row["page_id"], row["expires_at"]) == ("facebook_page", PAGE, None)
    assert TokenCipher((decode_key(KEY),)).decrypt(row["token_ciphertext"], ACCOUNT) == PAGE_TOKEN
    assert [s[0] for s in graph_online.oauth.subscribed] == [PAGE]
    assert {(c.token, c.bearer) for c in graph_online.calls} == {(PAGE_TOKEN, True)}
    del env["TOKEN_ENCRYPTION_KEY"]
    refused = add_page(database_url, env, PAGE_TOKEN)
    assert refused.returncode == 2 and "TOKEN_ENCRYPTION_KEY" in refused.stderr


async def test_the_account_of_instagram_access_token_is_asked_from_me_and_recorded(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    _, url = graph_server
    app = create_app(make_settings(INSTAGRAM_ACCESS_TOKEN=TOKEN_A, GRAPH_API_URL=url))
    book = app.state.accounts.book
    assert book.bearer_for(OTHER_ACCOUNT) == (TOKEN_A, url)  # unknown yet: serves everyone

    async def recorded() -> bool:
        return bool(await backend.pool.fetchval("select count(*) from ig_accounts"))

    async for _ in open_client(app):
        await eventually(recorded)
    assert (await state_of(backend))["source"] == "environment"
    assert book.bearer_for(ACCOUNT) == (TOKEN_A, url)
    assert book.bearer_for(OTHER_ACCOUNT) is None  # known now: only its own account
    assert graph_online.bearers("/me") == [TOKEN_A]
