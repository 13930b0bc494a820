"""What an operator does in the console, and that it is what `ingestctl` does.

Each action is `ingest.ops` (the CLI's code), so these tests check the console's
side of it: the confirm step comes first, the action happens once, the page shows
the outcome, and the audit trail names the operator and the door.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV, open_client, wait_settled
from tests.console import CONSOLE_ENV, sign_in
from tests.doubles.qstash import Published
from tests.meta import post, text_message

INGESTCTL = str(Path(sys.executable).parent / "ingestctl")
HTMX = {"HX-Request": "true"}


@pytest.fixture
async def console(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(create_app(make_settings(**CONSOLE_ENV))):
        yield client


async def switch_state(backend: PostgresBackend) -> tuple[bool, bool, str | None, str | None]:
    row = await backend.pool.fetchrow(
        "select kill_switch, hold, reason, changed_by from safety_state"
    )
    return row["kill_switch"], row["hold"], row["reason"], row["changed_by"]


async def audit_rows(backend: PostgresBackend) -> list[tuple[str, str, str, str]]:
    rows = await backend.pool.fetch(
        "select actor, door, action, outcome from ingest_audit order by id"
    )
    return [(r["actor"], r["door"], r["action"], r["outcome"]) for r in rows]


async def hold(console: httpx.AsyncClient, csrf: str, *mids: str) -> None:
    """Kill switch in hold mode (through the console), then deliver `mids`: held."""
    form = {"csrf_token": csrf, "action": "activate", "mode": "hold", "reason": "drill"}
    assert (await console.post("/console/kill-switch", data=form)).status_code == 200
    for mid in mids:
        assert (await post(console, text_message(mid))).status_code == 200


async def test_activating_the_kill_switch_asks_first_and_changes_nothing_until_confirmed(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console, "Alice Operator")
    ask = await console.post(
        "/console/kill-switch/confirm",
        data={"csrf_token": csrf, "reason": "runaway loop", "mode": "hold"},
        headers=HTMX,
    )
    assert ask.status_code == 200
    assert "<dialog open" in ask.text and "Activate the kill switch (hold)?" in ask.text
    assert await switch_state(backend) == (False, False, None, None)
    done = await console.post(
        "/console/kill-switch",
        data={"csrf_token": csrf, "action": "activate", "mode": "hold", "reason": "runaway loop"},
        headers=HTMX,
    )
    assert done.headers["HX-Trigger"] == "console-changed"
    assert await switch_state(backend) == (True, True, "runaway loop", "Alice Operator")
    assert "Deactivate" in done.text
    assert "ON · hold" in (await console.get("/console/pulse")).text


async def test_a_reason_is_required_and_said_so(console: httpx.AsyncClient) -> None:
    csrf = await sign_in(console)
    ask = await console.post(
        "/console/kill-switch/confirm", data={"csrf_token": csrf, "reason": " ", "mode": "hold"}
    )
    assert ask.status_code == 422
    assert "say why" in ask.text
    assert "<html" in ask.text  # without htmx: the whole page, with the section's message


@pytest.mark.parametrize(
    "reason", ["maintenance \x1b]0;owned\x07\x1b[2J", "all fine \u202egnirod\u202c", "nul\x00"]
)
async def test_a_reason_that_would_rewrite_what_others_read_is_refused(
    reason: str, console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    """A terminal escape or a bidi override would disguise the reason in `ingestctl
    status` and on the page."""
    csrf = await sign_in(console)
    form = {"csrf_token": csrf, "action": "activate", "mode": "direct", "reason": reason}
    refused = await console.post("/console/kill-switch", data=form, headers=HTMX)
    assert refused.status_code == 422
    assert "a reason cannot contain control or format characters" in refused.text
    assert await switch_state(backend) == (False, False, None, None)


async def test_a_replay_shows_the_count_first_then_replays_and_follows_the_relay(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console)
    await hold(console, csrf, "m_c1", "m_c2")
    assert await wait_settled(backend) == {"held": 2}
    confirmed = {"csrf_token": csrf, "scope": "all", "state": "held", "expected": "2"}
    refused = await console.post("/console/replay", data=confirmed, headers=HTMX)
    assert refused.status_code == 409
    assert "holding events" in refused.text
    await console.post("/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"})
    preview = await console.post(
        "/console/replay/preview",
        data={"csrf_token": csrf, "scope": "all", "state": "held"},
        headers=HTMX,
    )
    assert "Replay 2 event(s)?" in preview.text
    assert 'name="expected" value="2"' in preview.text
    assert await wait_settled(backend) == {"held": 2}  # the dry run changed nothing
    done = await console.post("/console/replay", data=confirmed, headers=HTMX)
    assert "Replayed 2 event(s)" in done.text
    at = re.search(r'progress\?at=([^"]+)"', done.text)
    assert await wait_settled(backend) == {"direct": 2}
    if at:  # the relay may already be done when the answer is rendered
        progress = await console.get(f"/console/replay/progress?at={at.group(1)}")
        assert "The relay has settled all 2: direct 2." in progress.text
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 2


async def test_a_replay_covers_the_count_it_showed_not_what_was_held_since(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console)
    await hold(console, csrf, "m_shown")
    await wait_settled(backend)
    await console.post("/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"})
    form = {"csrf_token": csrf, "scope": "all", "state": "held"}
    assert (
        "Replay 1 event(s)?"
        in (await console.post("/console/replay/preview", data=form, headers=HTMX)).text
    )
    await hold(console, csrf, "m_since")  # held after the operator saw "1"
    await wait_settled(backend)
    await console.post("/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"})
    stale = await console.post("/console/replay", data={**form, "expected": "1"}, headers=HTMX)
    assert stale.status_code == 409
    assert "2 event(s) match now, not the 1 you confirmed." in stale.text
    assert "Replay 2 event(s)?" in stale.text  # the fresh count, to confirm instead
    assert await wait_settled(backend) == {"held": 2}  # nothing replayed
    unconfirmed = await console.post("/console/replay", data=form, headers=HTMX)
    assert unconfirmed.status_code == 422
    assert "preview the replay first" in unconfirmed.text
    done = await console.post("/console/replay", data={**form, "expected": "2"}, headers=HTMX)
    assert "Replayed 2 event(s)" in done.text


async def test_replaying_the_selected_events_replays_only_those(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console)
    await hold(console, csrf, "mpick", "mleave")
    await wait_settled(backend)
    await console.post("/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"})
    page = await console.get("/console/problems", params={"state": "held"})
    assert 'value="ig_msg_mpick"' in page.text
    form = {"csrf_token": csrf, "scope": "selected", "state": "held", "dedup_id": "ig_msg_mpick"}
    preview = await console.post("/console/replay/preview", data=form, headers=HTMX)
    assert "Replay 1 event(s)?" in preview.text
    confirmed = {**form, "expected": "1"}
    assert (await console.post("/console/replay", data=confirmed, headers=HTMX)).status_code == 200
    assert await wait_settled(backend) == {"direct": 1, "held": 1}
    assert await backend.pool.fetchval("select mid from ig_messages") == "mpick"


async def test_lookup_by_mid_and_by_sender_shows_each_event_s_path(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await sign_in(console)
    await post(console, text_message("m_look", sender="5550001"))
    await post(console, text_message("m_other", sender="5550001"))
    await wait_settled(backend)
    by_mid = await console.get("/console/lookup", params={"q": "m_look"}, headers=HTMX)
    assert by_mid.text.count('class="path"') == 1
    assert 'data-dedup-id="ig_msg_m-5Flook"' in by_mid.text  # `_` escaped, as QStash needs
    steps = re.findall(r'<li class="(done|open)" data-step="([^"]+)"', by_mid.text)
    assert steps == [("done", "admitted"), ("done", "stored directly"), ("done", "stored")]
    by_sender = await console.get("/console/lookup", params={"q": "5550001"}, headers=HTMX)
    assert by_sender.text.count('class="path"') == 2
    nothing = await console.get("/console/lookup", params={"q": "m_unknown"}, headers=HTMX)
    assert "No event found" in nothing.text


async def test_a_lookup_or_filter_the_console_cannot_run_is_a_422_that_says_why(
    console: httpx.AsyncClient,
) -> None:
    await sign_in(console)
    for q in ("", " ", "9" * 201):
        answer = await console.get("/console/lookup", params={"q": q}, headers=HTMX)
        assert answer.status_code == 422, q
        assert "type a sender ID, a mid or a dedup ID (1 to 200)" in answer.text
    for state in ("", "pending"):
        answer = await console.get("/console/problems", params={"state": state}, headers=HTMX)
        assert answer.status_code == 422, state
        assert "state is one of held, failed, both" in answer.text
    assert (await console.get("/console/problems", headers=HTMX)).status_code == 200  # held


async def test_a_held_event_is_found_by_mid_and_not_yet_stored(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console)
    await hold(console, csrf, "m_waiting")
    await wait_settled(backend)
    found = await console.get("/console/lookup", params={"q": "m_waiting"}, headers=HTMX)
    steps = re.findall(r'<li class="(done|open)" data-step="([^"]+)"', found.text)
    assert steps == [("done", "admitted"), ("done", "held"), ("open", "stored")]


async def test_the_dlq_lists_our_label_only_and_redrives_as_the_operator(
    make_settings: Callable[..., Settings],
    qstash_server: tuple[Any, str],
    qstash: Any,
    backend: PostgresBackend,
) -> None:
    from tests.doubles.qstash import TOKEN

    _, url = qstash_server
    message = Published(
        "msg_x", "https://ingest.example.test/api/qstash/instagram-ingestion", {}, b"{}"
    )
    ours = qstash.dead_letter(message, label="instagram-messaging-event")
    theirs = qstash.dead_letter(message, label="someone-else")
    settings = make_settings(**CONSOLE_ENV, QSTASH_TOKEN=TOKEN, QSTASH_URL=url)
    async for console in open_client(create_app(settings)):
        csrf = await sign_in(console, "Dana")
        listed = await console.get("/console/dlq", headers=HTMX)
        assert ours in listed.text and theirs not in listed.text
        redriven = await console.post(
            "/console/dlq/redrive", data={"csrf_token": csrf, "dlq_id": ours}, headers=HTMX
        )
        assert "redriven as QStash message msg_" in redriven.text
        assert "The DLQ holds nothing with our label." in redriven.text
    assert ("Dana", "console", "dlq.redrive", "done") in await audit_rows(backend)


async def test_a_dlq_id_that_would_leave_its_path_is_refused_before_qstash_hears_of_it(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    """`.` or `..` would be resolved away: `POST /v2/dlq/retry` retries the whole DLQ."""
    sent: list[str] = []

    def qstash(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"messageId": "msg_new"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(qstash))
    settings = make_settings(**CONSOLE_ENV, QSTASH_TOKEN="t", QSTASH_URL="https://qstash.test")
    async for console in open_client(create_app(settings, http=http)):
        csrf = await sign_in(console, "Dana")
        for dlq_id in (".", "..", "a/../..", "1725323658779-0"):
            form = {"csrf_token": csrf, "dlq_id": dlq_id}
            answer = await console.post("/console/dlq/redrive", data=form, headers=HTMX)
            refused = "not a QStash DLQ id" in answer.text
            assert refused == (dlq_id != "1725323658779-0"), dlq_id
    assert [p for p in sent if not p.startswith("/v2/dlq?")] == ["/v2/dlq/retry/1725323658779-0"]
    assert [row[3] for row in await audit_rows(backend) if row[2] == "dlq.redrive"] == ["done"]


async def test_the_audit_trail_records_both_doors(
    console: httpx.AsyncClient, backend: PostgresBackend, database_url: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {**clean, **BASE_ENV, "DATABASE_URL": database_url}

    async def ingestctl(*args: str) -> None:
        command = [INGESTCTL, *args]
        done = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr

    await ingestctl("kill-switch", "activate", "from the shell", "--by", "bob")
    csrf = await sign_in(console, "Alice Operator")
    await console.post("/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"})
    await ingestctl("replay", "--no-wait")  # no --by: the OS user
    assert await audit_rows(backend) == [
        ("bob", "cli", "kill_switch.activate", "done"),
        ("Alice Operator", "console", "console.login", "done"),
        ("Alice Operator", "console", "kill_switch.deactivate", "done"),
        (getpass.getuser(), "cli", "replay", "done"),
    ]
    trail = (await console.get("/console/audit")).text
    assert trail.index("kill_switch.deactivate") < trail.index("kill_switch.activate")
    assert "bob" in trail and "cli" in trail


async def test_the_page_shows_every_section(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    await sign_in(console)
    await post(console, text_message("m_page", sender="777", text="hello from a customer"))
    await wait_settled(backend)
    await backend.pool.execute("insert into qstash_spend (day, messages) values (current_date, 42)")
    page = (await console.get("/console")).text
    for section in (
        "pulse",
        "switch",
        "problems",
        "lookup",
        "dlq",
        "spend",
        "conversations",
        "audit",
    ):
        assert f'<section id="{section}"' in page, section
    assert page.count('<rect class="bar') == 30
    assert "42 messages" in page
    assert "hello from a customer" in page
    assert "style=" not in page and "<script>" not in page


async def test_with_the_database_down_the_page_says_so_and_actions_are_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    nowhere = f"postgresql://postgres@/x?host={tmp_path}&port=9"
    settings = make_settings(**CONSOLE_ENV, DATABASE_URL=nowhere)
    async for console in open_client(create_app(settings)):
        csrf = await sign_in(console)  # signing in does not need the database
        page = (await console.get("/console")).text
        assert "Database unavailable: nothing below is current." in page
        form = {"csrf_token": csrf, "action": "activate", "mode": "hold", "reason": "x"}
        refused = await console.post("/console/kill-switch", data=form)
        assert refused.status_code == 503
        assert "database is unavailable" in refused.text


async def test_a_published_event_s_path_goes_through_qstash_to_stored(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> None:
    from tests.conftest import forward_to_consumer

    async for console in open_client(create_app(qstash_settings(**CONSOLE_ENV))):
        await sign_in(console)
        await post(console, text_message("mviaqstash"))
        assert await wait_settled(backend) == {"published": 1}
        waiting = await console.get("/console/lookup", params={"q": "mviaqstash"}, headers=HTMX)
        assert re.findall(r'<li class="(\w+)" data-step="stored"', waiting.text) == ["open"]
        assert await forward_to_consumer(console, qstash) == [200]
        found = await console.get("/console/lookup", params={"q": "mviaqstash"}, headers=HTMX)
    steps = re.findall(r'<li class="(done|open)" data-step="([^"]+)"', found.text)
    assert steps == [("done", "admitted"), ("done", "published"), ("done", "stored")]
    assert qstash.messages[0].message_id in found.text
    assert "delivered by QStash" in found.text


async def test_the_audit_trail_counts_the_events_picked_by_hand_but_names_none(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console)
    await hold(console, csrf, "mprivate")
    await wait_settled(backend)
    await console.post("/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"})
    form = {"csrf_token": csrf, "scope": "selected", "state": "held", "dedup_id": "ig_msg_mprivate"}
    await console.post("/console/replay", data={**form, "expected": "1"})
    detail = await backend.pool.fetchval("select detail from ingest_audit where action = 'replay'")
    assert detail == {"states": ["held", "failed"], "selected": 1, "replayed": 1}
    assert "mprivate" not in str(await backend.pool.fetch("select * from ingest_audit"))
