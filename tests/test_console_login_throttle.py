"""Guessing the console's token (issue 23, item 3): a few wrong tokens cost nothing, then
every sign-in waits (429 + `Retry-After`, doubling, capped), per address and for everyone,
held in the database; the right token waits too, and signs in straight away afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from structlog.testing import capture_logs
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.console import CONSOLE_ENV, CONSOLE_TOKEN, csrf_of

FAILURES = "ingest_console_login_failures"


@asynccontextmanager
async def browser(
    app: Any, address: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client at `address` (the TCP peer the server sees)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=headers
    ) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await client.get("/console")
    return await client.post(
        "/console/login",
        data={"csrf_token": csrf_of(form.text), "name": "Alice", "token": token},
    )


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Callable[..., Starlette]:
    def make(**env: str) -> Starlette:
        return create_app(make_settings(**CONSOLE_ENV, **env))

    return make


@pytest.fixture
async def app(make_app: Callable[..., Starlette]) -> AsyncIterator[Starlette]:
    made = make_app(CONSOLE_LOGIN_FREE_FAILURES="3")
    async with made.router.lifespan_context(made):
        yield made


async def time_passes(backend: PostgresBackend) -> None:
    """The current wait is over (as if its seconds had passed)."""
    await backend.pool.execute(f"update {FAILURES} set blocked_until = now() - interval '1 s'")


async def test_guessing_the_token_backs_off_doubling_up_to_a_minute(
    app: Starlette, backend: PostgresBackend
) -> None:
    async with browser(app) as client:
        for _ in range(3):
            assert (await sign_in(client, "guess")).status_code == 403
        waits = []
        for _ in range(4):
            refused = await sign_in(client, "guess")
            assert refused.status_code == 429
            assert "try again in" in refused.text
            waits.append(int(refused.headers["retry-after"]))
            await time_passes(backend)
        assert waits == [1, 2, 4, 8]
        await backend.pool.execute(f"update {FAILURES} set failures = 1000")
        capped = await sign_in(client, "guess")
        assert capped.status_code == 429 and capped.headers["retry-after"] == "60"
        right = await sign_in(client, CONSOLE_TOKEN)  # the operator waits too
        assert right.status_code == 429
        assert 0 < int(right.headers["retry-after"]) <= 60


async def test_the_console_signs_in_straight_away_after_the_back_off_window(
    app: Starlette,
) -> None:
    async with browser(app) as client:
        for _ in range(4):
            await sign_in(client, "guess")
        waiting = await sign_in(client, CONSOLE_TOKEN)
        assert waiting.status_code == 429 and waiting.headers["retry-after"] == "1"
        await asyncio.sleep(1.1)  # the real window
        assert (await sign_in(client, CONSOLE_TOKEN)).status_code == 303
        page = await client.get("/console")
        assert "signed in as <strong>Alice</strong>" in page.text


async def test_guesses_while_backing_off_write_nothing_and_log_nothing(
    app: Starlette, backend: PostgresBackend
) -> None:
    async with browser(app) as client:
        with capture_logs() as logs:
            for _ in range(4):
                await sign_in(client, "guess")
            before = await backend.pool.fetch(f"select * from {FAILURES} order by scope")
            for _ in range(30):
                assert (await sign_in(client, "guess")).status_code == 429
            after = await backend.pool.fetch(f"select * from {FAILURES} order by scope")
    assert [dict(r) for r in after] == [dict(r) for r in before]
    loud = [e for e in logs if e["log_level"] in ("info", "warning", "error")]
    assert [e["event"] for e in loud if e["event"] != "request"] == ["console_login_backing_off"]
    assert len(loud) <= 5  # the three 403s, the one back-off, no line per refused guess


async def test_many_addresses_cannot_guess_in_parallel(
    make_app: Callable[..., Starlette],
) -> None:
    app = make_app(CONSOLE_LOGIN_FREE_FAILURES="100", CONSOLE_LOGIN_GLOBAL_FAILURES="4")
    async with app.router.lifespan_context(app):
        statuses = []
        for n in range(6):
            async with browser(app, f"198.51.100.{n}") as client:
                statuses.append((await sign_in(client, "guess")).status_code)
        async with browser(app, "198.51.100.200") as operator:
            right = await sign_in(operator, CONSOLE_TOKEN)
    assert statuses == [403, 403, 403, 403, 429, 429]
    assert right.status_code == 429  # a fresh address waits out the global back-off too


async def test_a_forwarded_for_header_does_not_choose_the_address(
    app: Starlette,
) -> None:
    """As uvicorn runs us (`--proxy-headers`): `X-Forwarded-For` counts only from a proxy
    in `FORWARDED_ALLOW_IPS` (here 127.0.0.1)."""
    proxied = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")
    for n in range(6):  # a stranger names a new address each time: all one address
        async with browser(proxied, "203.0.113.9", {"X-Forwarded-For": f"10.0.0.{n}"}) as c:
            status = (await sign_in(c, "guess")).status_code
    assert status == 429
    async with browser(proxied, "127.0.0.1", {"X-Forwarded-For": "192.0.2.7"}) as client:
        assert (await sign_in(client, CONSOLE_TOKEN)).status_code == 303  # another address


async def test_the_back_off_holds_across_instances(
    make_app: Callable[..., Starlette],
) -> None:
    first, second = make_app(), make_app()
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        async with browser(first) as client:
            for _ in range(6):
                await sign_in(client, "guess")
        async with browser(second) as client:
            assert (await sign_in(client, CONSOLE_TOKEN)).status_code == 429


def test_a_short_console_token_warns_at_start_up_outside_development(
    make_settings: Callable[..., Settings],
) -> None:
    short = {**CONSOLE_ENV, "CONSOLE_TOKEN": "s" * 20}
    with capture_logs() as logs:
        create_app(make_settings(**short))
    (warning,) = [e for e in logs if e["event"] == "console_token_short"]
    assert warning["log_level"] == "warning" and "s" * 20 not in str(warning)
    with capture_logs() as logs:
        create_app(make_settings(**CONSOLE_ENV, APP_ENV="development"))
        create_app(make_settings(**{**CONSOLE_ENV, "CONSOLE_TOKEN": "t" * 32}))
    assert [e for e in logs if e["event"] == "console_token_short"] == []
