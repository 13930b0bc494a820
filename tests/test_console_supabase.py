"""The console on the Supabase path: every read and action through the real PostgREST.

The console's SQL functions take arrays, JSON and timestamps as text; PostgREST must
resolve and call each of them with the arguments the console sends, as asyncpg does.
"""

from __future__ import annotations

import re

import httpx

from ingest.app import create_app
from ingest.config.env import settings_from_env
from ingest.config.settings import Settings
from tests.conftest import BASE_ENV, open_client, wait_settled
from tests.console import CONSOLE_ENV, sign_in
from tests.meta import post, text_message
from tests.supabase_stack import SERVICE_ROLE_KEY, SupabaseStack

HTMX = {"HX-Request": "true"}


def console_settings(stack: SupabaseStack) -> Settings:
    env = {**BASE_ENV, "SUPABASE_URL": stack.url, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY}
    return settings_from_env({**env, **CONSOLE_ENV}, env_file=None)


async def test_hold_replay_and_look_up_through_postgrest(supabase: SupabaseStack) -> None:
    async for console in open_client(create_app(console_settings(supabase))):
        csrf = await sign_in(console, "Sam")
        hold = {"csrf_token": csrf, "action": "activate", "mode": "hold", "reason": "rest drill"}
        assert (await console.post("/console/kill-switch", data=hold)).status_code == 200
        await post(console, text_message("mrest1", sender="4242"))
        assert await wait_settled(supabase) == {"held": 1}
        problems = await console.get("/console/problems", params={"state": "held"}, headers=HTMX)
        assert 'value="ig_msg_mrest1"' in problems.text
        await console.post(
            "/console/kill-switch", data={"csrf_token": csrf, "action": "deactivate"}
        )
        form = {"csrf_token": csrf, "scope": "all", "state": "held"}
        preview = await console.post("/console/replay/preview", data=form, headers=HTMX)
        assert "Replay 1 event(s)?" in preview.text
        done = await console.post("/console/replay", data={**form, "expected": "1"}, headers=HTMX)
        assert "Replayed 1 event(s)" in done.text
        assert await wait_settled(supabase) == {"direct": 1}
        await _progress_is_complete(console, done.text)
        await _page_and_lookup(console)
    audit = await supabase.fetch("select actor, door, action from ingest_audit order by id")
    assert [tuple(r) for r in audit] == [
        ("Sam", "console", "console.login"),
        ("Sam", "console", "kill_switch.activate"),
        ("Sam", "console", "kill_switch.deactivate"),
        ("Sam", "console", "replay"),
    ]


async def _progress_is_complete(console: httpx.AsyncClient, replayed: str) -> None:
    at = re.search(r"progress\?at=([^\"]+)\"", replayed)
    if at:  # else the relay had already settled it when the answer was rendered
        progress = await console.get(f"/console/replay/progress?at={at.group(1)}")
        assert "The relay has settled all 1: direct 1." in progress.text


async def _page_and_lookup(console: httpx.AsyncClient) -> None:
    page = (await console.get("/console")).text
    assert "Database unavailable" not in page and "database is unavailable" not in page
    # the spend read worked (else "unavailable"): nothing spent, QStash off, so no empty chart
    assert "QStash is off" in page and '<rect class="bar' not in page
    assert "4242" in page  # the conversation
    found = await console.get("/console/lookup", params={"q": "mrest1"}, headers=HTMX)
    steps = re.findall(r'data-step="([^"]+)"', found.text)
    assert steps == ["admitted", "replayed", "stored directly", "stored"]
