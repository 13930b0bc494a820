"""The console as a newcomer reads it: a customer's conversation on its own page, the
conversation list paged and searchable, the lookup in the README's dedup-ID form, audit
details as words, the spend chart when QStash is off, control characters made visible."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from contracts.dedup import escape_part
from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.ops import kill_switch
from ingest.ops.audit import Actor
from storage.postgres import PostgresBackend
from tests.conftest import open_client, wait_settled
from tests.console import CONSOLE_ENV, sign_in
from tests.meta import fixture, post, text_message, wire_bytes

HTMX = {"HX-Request": "true"}
CUSTOMER = "1234567890123456"
MID = fixture("image_attachment")["entry"][0]["messaging"][0]["message"]["mid"]


@pytest.fixture
async def console(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(create_app(make_settings(**CONSOLE_ENV))):
        await sign_in(client)
        yield client


def _delivery(name: str, **message: object) -> bytes:
    payload = fixture(name)
    item = payload["entry"][0]["messaging"][0]
    key = next(k for k in ("message", "message_edit", "reaction") if k in item)
    item[key].update(message)
    return wire_bytes(payload)


def _text(mid: str, text: str, later_ms: int) -> bytes:
    """A text message sent `later_ms` after the fixtures' own time: an order to check."""
    payload = json.loads(text_message(mid, text=text))
    item = payload["entry"][0]["messaging"][0]
    item["timestamp"] += later_ms
    return wire_bytes(payload)


async def _converse(console: httpx.AsyncClient, backend: PostgresBackend) -> None:
    """A picture (reacted to, then captioned by an edit), a text later unsent, a text
    holding a terminal escape, and a link that is no web link."""
    await post(console, _delivery("image_attachment"))
    await post(console, _delivery("reaction"))
    await post(console, _delivery("edit"))
    await post(console, _text("m_conv_unsent", "wrong chat, sorry", 1000))
    unsend = fixture("unsend")
    item = unsend["entry"][0]["messaging"][0]
    item["message"]["mid"] = "m_conv_unsent"
    await post(console, wire_bytes(unsend))
    await post(console, _text("m_conv_escape", "red \x1b[31malert\x1b[0m done", 2000))
    bad_link = fixture("image_attachment")
    bad_msg = bad_link["entry"][0]["messaging"][0]["message"]
    bad_msg["mid"] = "m_conv_js"
    bad_link["entry"][0]["messaging"][0]["timestamp"] += 3000
    bad_msg["attachments"][0]["payload"]["url"] = "javascript:alert(1)"
    await post(console, wire_bytes(bad_link))
    await wait_settled(backend)


async def test_a_customers_conversation_page_shows_each_message_with_what_happened_to_it(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await _converse(console, backend)
    home = await console.get("/console")
    assert f'href="/console/conversations/{CUSTOMER}"' in home.text
    page = await console.get(f"/console/conversations/{CUSTOMER}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "Conversation with" in html and CUSTOMER in html
    image = 'href="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=1&amp;signature=abc"'
    assert image in html  # the attachment is a link
    assert "Is the blue one still available?" in html  # the edit's text
    assert "edited 1 time(s)" in html
    assert "reactions: ❤️" in html
    assert "unsent" in html and "wrong chat, sorry" not in html
    assert 'href="javascript:' not in html
    assert r"red \x1b[31malert\x1b[0m done" in html and "\x1b" not in html
    order = [html.index(mid) for mid in (MID, "m_conv_unsent", "m_conv_escape", "m_conv_js")]
    assert order == sorted(order)  # in the order they were sent


async def test_a_conversation_nobody_had_is_a_404_page_with_a_sentence(
    console: httpx.AsyncClient,
) -> None:
    missing = await console.get("/console/conversations/999")
    assert missing.status_code == 404
    assert "No conversation with that customer." in missing.text


async def test_the_conversation_list_is_paged_and_searchable(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    for n in range(23):
        await post(console, text_message(f"m_page_{n}", sender=f"5550{n:03d}"))
    await wait_settled(backend)
    first = await console.get("/console/conversations", headers=HTMX)
    assert first.text.count('href="/console/conversations/5550') == 20
    assert "page 1 of 2 (23 customers)" in first.text
    second = await console.get("/console/conversations?page=2", headers=HTMX)
    assert second.text.count('href="/console/conversations/5550') == 3
    found = await console.get("/console/conversations?q=5550007", headers=HTMX)
    assert re.findall(r'href="/console/conversations/(\d+)"', found.text) == ["5550007"]
    none = await console.get("/console/conversations?q=nobody", headers=HTMX)
    assert "No customer matches “nobody”." in none.text
    long = await console.get("/console/conversations?q=" + "x" * 101, headers=HTMX)
    assert long.status_code == 422
    assert "A search has at most 100 characters." in long.text
    for page in ("0", "-1", "two"):
        wrong = await console.get(f"/console/conversations?page={page}", headers=HTMX)
        assert wrong.status_code == 422 and "A page is a whole number from 1." in wrong.text


async def test_lookup_finds_a_dedup_id_written_as_the_readme_writes_it(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    """The README documents `ig_msg_<mid>`; the ledger holds the mid escaped
    (`m_sample_1` → `m-5Fsample-5F1`). Both forms find the event."""
    await post(console, text_message("m_sample_1"))
    await wait_settled(backend)
    stored = await backend.pool.fetchval("select dedup_id from ingest_ledger")
    assert stored == f"ig_msg_{escape_part('m_sample_1')}" == "ig_msg_m-5Fsample-5F1"
    for query in ("ig_msg_m_sample_1", stored, "m_sample_1"):
        found = await console.get(f"/console/lookup?q={query}", headers=HTMX)
        assert found.status_code == 200
        assert "ig_msg_m-5Fsample-5F1" in found.text, query
        assert f'href="/console/conversations/{CUSTOMER}"' in found.text  # to the text


async def test_audit_details_read_as_names_and_values_not_raw_json(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await kill_switch.activate(backend, Actor("alice", "cli"), "deploy", hold=False)
    trail = await console.get("/console/audit", headers=HTMX)
    assert "<dt>reason</dt><dd>deploy</dd>" in trail.text
    assert "{&#34;" not in trail.text and '{"' not in trail.text
    await backend.call(
        "ingest_audit_record",
        {"p_actor": "bob", "p_door": "cli", "p_action": "replay",
         "p_detail": json.loads('{"states": ["held", "failed"], "note": "a\\u001bb"}'),
         "p_outcome": "done"},
    )  # fmt: skip
    trail = await console.get("/console/audit", headers=HTMX)
    assert "<dt>states</dt><dd>held, failed</dd>" in trail.text
    assert r"<dd>a\x1bb</dd>" in trail.text


async def test_the_spend_chart_says_qstash_is_off_rather_than_drawing_an_empty_box(
    console: httpx.AsyncClient,
) -> None:
    page = await console.get("/console")
    spend = page.text.split('id="spend"', 1)[1].split("</section>", 1)[0]
    assert "QStash is off" in spend
    assert "<svg" not in spend
