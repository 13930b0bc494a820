"""Keeping tokens alive: a 50-day-old token is refreshed once however many instances run
the schedule; what is not due is left alone; a temporary error is retried later, a
refusal leaves the account active, a 190 makes it `needs_reauth` (and `ingestctl` says so).
The clock is injected: "50 days later" is a `now` handed to the refresher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ingest.accounts.cipher import TokenCipher
from ingest.accounts.refresh import RefreshSchedule
from ingest.accounts.service import AccountsService
from ingest.config.connect_env import decode_key
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.accounts_kit import (
    ACCOUNT,
    KEY,
    SIXTY_DAYS,
    TOKEN_A,
    account_env,
    account_settings,
    connected,
    eventually,
    ingestctl,
)
from tests.doubles.graph_api import GraphApiDouble
from tests.test_cli import ctl  # noqa: F401 - the fixture

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def service(
    settings: Settings, backend: Any, http: httpx.AsyncClient, days: float
) -> AccountsService:
    return AccountsService.build(settings, backend, http, now=lambda: T0 + timedelta(days=days))


async def account_row(backend: PostgresBackend) -> dict[str, Any]:
    row = await backend.pool.fetchrow("select * from ig_accounts where account_id = $1", ACCOUNT)
    assert row is not None
    return dict(row)


def refresh_calls(graph: GraphApiDouble) -> list[str | None]:
    return graph.bearers("/refresh_access_token")


async def test_a_fifty_day_old_token_is_refreshed_once_by_two_instances_running_the_schedule(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, database_url: str,
    http: httpx.AsyncClient,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    await connected(backend, ACCOUNT, TOKEN_A, now=T0)
    settings = account_settings(make_settings, graph_server)
    other = PostgresBackend(database_url)  # a second instance: its own pool, its own book
    await other.open()
    instances = [service(settings, b, http, days=50) for b in (backend, other)]
    # Both at once (the claim's row lock decides), then a third while the first instance's
    # refresh is still under way at Meta (its lease decides).
    graph_online.oauth.refresh_delay = 0.5
    schedules = [RefreshSchedule(s.refresher, 3600, first_after=after)
                 for s, after in zip([*instances, instances[1]], (0, 0, 0.2), strict=True)
                 if s.refresher is not None]  # fmt: skip
    tasks = [asyncio.create_task(s.run()) for s in schedules]
    try:

        async def both_ran() -> bool:
            return all(s.passes >= 1 for s in schedules)

        await eventually(both_ran)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await other.close()
    assert refresh_calls(graph_online) == [TOKEN_A]  # one refresh, with the old token
    row = await account_row(backend)
    new = graph_online.oauth.issued[-1]
    assert TokenCipher((decode_key(KEY),)).decrypt(row["token_ciphertext"], ACCOUNT) == new
    assert row["refreshed_at"] == T0 + timedelta(days=50)
    assert row["expires_at"] == T0 + timedelta(days=50, seconds=SIXTY_DAYS)
    assert (row["state"], row["refresh_holder"]) == ("active", None)
    refreshing = [
        s for s in instances if s.book.bearer_for(ACCOUNT) == (new, settings.graph_api_url)
    ]
    assert len(refreshing) == 1  # the instance that refreshed uses the new token at once


async def test_a_token_not_yet_due_is_left_alone_unless_forced(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, http: httpx.AsyncClient,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    await connected(backend, ACCOUNT, TOKEN_A, now=T0)
    settings = account_settings(make_settings, graph_server)
    for days in (0.5, 20, 49.9):  # younger than a day; expiring in 40 days; in 10.1 days
        refresher = service(settings, backend, http, days).refresher
        assert refresher is not None
        assert await refresher.run() == []
    assert refresh_calls(graph_online) == []
    forced = service(settings, backend, http, 0.5).refresher
    assert forced is not None
    assert [r.outcome for r in await forced.run(force=True)] == ["refreshed"]


async def test_a_temporary_error_is_retried_later_and_a_refusal_leaves_the_account_active(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, http: httpx.AsyncClient,
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    await connected(backend, ACCOUNT, TOKEN_A, now=T0)
    refresher = service(account_settings(make_settings, graph_server), backend, http, 55).refresher
    assert refresher is not None
    graph_online.fail_next(500, 2, transient=True, when="refresh_access_token")
    assert [r.outcome for r in await refresher.run()] == ["retry"]
    graph_online.fail_next(400, 100, when="refresh_access_token", message="token too young")
    assert [(r.outcome, r.code) for r in await refresher.run()] == [("refused", 100)]
    row = await account_row(backend)
    assert (row["state"], row["last_error_code"], row["refresh_holder"]) == ("active", 100, None)
    assert [r.outcome for r in await refresher.run()] == ["refreshed"]
    assert len(refresh_calls(graph_online)) == 3


async def test_a_token_answering_190_on_refresh_needs_reauth_and_ingestctl_says_so(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, http: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    await connected(backend, ACCOUNT, TOKEN_A, now=T0)
    graph_online.expire(TOKEN_A)
    settings = account_settings(make_settings, graph_server)
    refresher = service(settings, backend, http, 55).refresher
    assert refresher is not None
    assert [(r.outcome, r.code) for r in await refresher.run()] == [("needs_reauth", 190)]
    assert await refresher.run() == []  # no hammering Meta with a dead token
    code, status = await ingestctl(settings, capsys, "status", "--json")
    assert code == 0, status
    (account,) = json.loads(status)["accounts"]
    assert (account["account_id"], account["state"]) == (ACCOUNT, "needs_reauth")
    assert (
        f"account     : {ACCOUNT} NEEDS_REAUTH" in (await ingestctl(settings, capsys, "status"))[1]
    )
    listed = json.loads((await ingestctl(settings, capsys, "accounts", "--json"))[1])
    assert {k: listed[0][k] for k in ("account_id", "source", "state")} == {
        "account_id": ACCOUNT, "source": "instagram_login", "state": "needs_reauth",
    }  # fmt: skip
    assert TOKEN_A not in status


async def test_ingestctl_accounts_refresh_force_refreshes_now(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str],
    graph_online: GraphApiDouble, backend: PostgresBackend, ctl: Callable[..., Any],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    graph_online.add_account(ACCOUNT, TOKEN_A)
    await connected(backend, ACCOUNT, TOKEN_A)
    settings = account_settings(make_settings, graph_server)
    young = await ingestctl(settings, capsys, "accounts", "refresh", "--json")
    assert (young[0], json.loads(young[1])) == (0, [])
    done = ctl("accounts", "refresh", "--force", "--account", ACCOUNT, "--json",
               **account_env(graph_server))  # the real script, once  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [(r["account_id"], r["outcome"]) for r in json.loads(done.stdout)] == [
        (ACCOUNT, "refreshed"),
    ]
    assert refresh_calls(graph_online) == [TOKEN_A]
