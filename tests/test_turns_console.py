"""The console's turns: figures on the home page, a conversation's turns, replay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import open_client
from tests.console import CONSOLE_ENV, sign_in
from tests.turn_kit import FAST, message_event

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def console(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(create_app(make_settings(**CONSOLE_ENV))):
        await backend.call("ingest_turn_configure", {"p_settings": FAST})  # turns kept by SQL
        yield client


async def two_turns(backend: PostgresBackend) -> None:
    for customer in ("c1", "c2"):
        event = message_event(f"{customer}_m", customer, text="my home address")
        await backend.call("ig_apply_event", {"p_event": event})
    await backend.pool.execute(
        "update ig_turns set state = 'failed', seq = 1, closed_at = now(), reason = 'down'"
        " where customer_id = 'c1'"
    )


async def test_the_home_page_shows_turn_figures_and_never_message_text(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await two_turns(backend)
    await sign_in(console)
    page = await console.get("/console")
    section = page.text.split('<section id="turns"', 1)[1].split("</section>", 1)[0]
    assert 'id="turn-figures"' in section
    assert "open <strong>1</strong>" in section and "failed <strong>1</strong>" in section
    assert "ig_turn_msg_c1_m" in section
    assert "my home address" not in section  # ids, states and counts only


async def test_a_conversations_turns_are_listed_and_a_bad_filter_is_a_sentence(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await two_turns(backend)
    await sign_in(console)
    one = await console.get("/console/turns", params={"customer": "c2"}, headers=HTMX)
    assert one.status_code == 200
    assert "ig_turn_msg_c2_m" in one.text and "ig_turn_msg_c1_m" not in one.text
    bad = await console.get("/console/turns", params={"state": "lost"}, headers=HTMX)
    assert bad.status_code == 422 and "state is one of" in bad.text
    signed_out = await httpx.AsyncClient(
        transport=console._transport,
        base_url="http://testserver",  # no session cookie
    ).get("/console/turns")
    assert signed_out.status_code in (303, 401, 403)


async def test_a_customers_conversation_page_lists_their_turns_and_no_one_elses(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await two_turns(backend)
    await sign_in(console)
    page = await console.get("/console/conversations/c1")
    assert page.status_code == 200
    section = page.text.split('<section id="turns"', 1)[1].split("</section>", 1)[0]
    assert "ig_turn_msg_c1_m" in section and "ig_turn_msg_c2_m" not in section


async def test_replaying_failed_turns_from_the_console_returns_them_to_pending(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await two_turns(backend)
    csrf = await sign_in(console)
    done = await console.post(
        "/console/turns/replay", data={"csrf_token": csrf, "state": "failed"}, headers=HTMX
    )
    assert done.status_code == 200 and "1 failed turn(s) sent again" in done.text
    row = await backend.pool.fetchrow("select state, replayed from ig_turns where customer_id='c1'")
    assert row is not None and dict(row) == {"state": "pending", "replayed": True}
    wrong = await console.post(
        "/console/turns/replay", data={"csrf_token": csrf, "state": "open"}, headers=HTMX
    )
    assert wrong.status_code == 422
    forged = await console.post("/console/turns/replay", data={"state": "failed"}, headers=HTMX)
    assert forged.status_code == 403
