"""`ingestctl` as an operator runs it: the real console script against real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from storage.embedded import EmbeddedPostgres
from storage.migrations import discover
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV, open_client, wait_settled
from tests.doubles.qstash import TOKEN, Published, serve
from tests.meta import post, text_message

INGESTCTL = str(Path(sys.executable).parent / "ingestctl")


@pytest.fixture
def ctl(database_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        return subprocess.run(
            [INGESTCTL, *args],
            env={**clean, **BASE_ENV, "DATABASE_URL": database_url, **env},
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run


async def hold_three(make_settings: Callable[..., Settings], backend: PostgresBackend) -> None:
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True}
    )
    async for client in open_client(create_app(make_settings())):
        for n in range(3):
            assert (await post(client, text_message(f"m_cli_{n}"))).status_code == 200
        assert await wait_settled(backend) == {"held": 3}


def test_kill_switch_round_trip(ctl: Callable[..., Any]) -> None:
    on = ctl("kill-switch", "activate", "runaway loop suspected", "--by", "alice")
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip() == "kill switch ON (nothing is published; events are stored directly)"
    status = json.loads(ctl("status", "--json").stdout)
    assert (status["kill_switch"], status["hold"], status["reason"], status["changed_by"]) == (
        True, False, "runaway loop suspected", "alice",
    )  # fmt: skip
    human = ctl("status").stdout
    assert "kill switch : ON, direct (runaway loop suspected, by alice" in human
    held = ctl("kill-switch", "activate", "incident 42", "--hold")
    assert "holding" in held.stdout
    assert json.loads(ctl("status", "--json").stdout)["hold"] is True
    off = ctl("kill-switch", "deactivate")
    assert off.returncode == 0
    assert off.stdout.strip() == "kill switch off"
    assert json.loads(ctl("status", "--json").stdout)["kill_switch"] is False


def test_a_kill_switch_reason_must_be_readable_text(ctl: Callable[..., Any]) -> None:
    for reason, sentence in (
        ("", "say why"),
        ("deploy \x1b[2J", "a reason cannot contain control or format characters"),
    ):
        refused = ctl("kill-switch", "activate", reason)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.startswith("ingestctl: ") and sentence in refused.stderr
        assert "Traceback" not in refused.stderr
    assert json.loads(ctl("status", "--json").stdout)["kill_switch"] is False


async def test_replay_returns_held_events_to_the_relay_and_stores_each_once(
    ctl: Callable[..., Any], make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    await hold_three(make_settings, backend)
    refused = ctl("replay")
    assert refused.returncode == 1
    assert "holding" in refused.stderr
    ctl("kill-switch", "deactivate")
    dry = json.loads(ctl("replay", "--dry-run", "--json").stdout)
    assert dry["would_replay"] == 3
    done = ctl("replay", "--held", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"replayed": 3, "settled": {"direct": 3}}
    assert json.loads(ctl("replay", "--json").stdout) == {"replayed": 0}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 3


async def test_a_replay_that_cannot_store_keeps_the_event_as_failed(
    ctl: Callable[..., Any], make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    """The database refuses the event for good: the row is `failed` with the reason, its
    payload kept; nothing is deleted and the command exits 1 with a sentence, not a
    traceback."""
    await hold_three(make_settings, backend)
    ctl("kill-switch", "deactivate")
    await backend.pool.execute("alter table ig_messages add constraint no_hi check (text <> 'hi')")
    done = ctl("replay", "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout) == {"replayed": 3, "settled": {"failed": 3}}
    assert "Traceback" not in done.stderr
    rows = await backend.pool.fetch("select state, reason, event from ingest_ledger")
    assert len(rows) == 3
    assert all(r["state"] == "failed" and "no_hi" in r["reason"] for r in rows)
    assert all(r["event"]["mid"].startswith("m_cli_") for r in rows)


async def test_relay_once_settles_what_is_pending_and_stops(
    ctl: Callable[..., Any], backend: PostgresBackend
) -> None:
    from ingest.edge.parser import parse_delivery

    events = [
        e.model_dump(mode="json")
        for n in range(4)
        for e in parse_delivery(json.loads(text_message(f"m_pending_{n}")))
    ]
    await backend.call("ingest_admit", {"p_events": events})
    result = ctl("relay", "--once", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"direct": 4}
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 4


async def test_monitor_reports_daily_counts_and_warns_on_failures(
    ctl: Callable[..., Any], make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(make_settings())):
        for n in range(4):
            await post(client, text_message(f"m_mon_{n}", sender=str(700 + n % 2)))
        await wait_settled(backend)
    healthy = ctl("monitor", "--json")
    assert healthy.returncode == 0
    report = json.loads(healthy.stdout)
    assert report["daily"][0]["direct"] == 4
    assert {s["sender_id"] for s in report["top_senders"]} == {"700", "701"}
    await backend.pool.execute("update ingest_ledger set state = 'failed' where dedup_id like '%0'")
    failing = ctl("monitor")
    assert failing.returncode == 1
    assert "failure rate: 25.0%" in failing.stdout
    assert "WARNING" in failing.stdout


def test_database_unavailable_exits_3(ctl: Callable[..., Any], tmp_path: Path) -> None:
    result = ctl("status", DATABASE_URL=f"postgresql://postgres@/x?host={tmp_path}&port=9")
    assert result.returncode == 3
    assert "database unavailable" in result.stderr


def test_bad_configuration_exits_2(ctl: Callable[..., Any]) -> None:
    result = ctl("status", PORT="eighty")
    assert result.returncode == 2
    assert "PORT is malformed" in result.stderr


def test_migrate_applies_every_migration_to_a_new_database(
    ctl: Callable[..., Any], pg_server: EmbeddedPostgres
) -> None:
    url = pg_server.create_database("cli_migrate")
    try:
        result = ctl("migrate", "--json", DATABASE_URL=url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["applied"] == [m.version for m in discover()]
        assert json.loads(ctl("migrate", "--json", DATABASE_URL=url).stdout)["applied"] == []
    finally:
        pg_server.drop_database("cli_migrate")


def test_dlq_list_and_redrive_use_our_label(
    ctl: Callable[..., Any], qstash_server: tuple[Any, str], qstash: Any
) -> None:
    _, url = qstash_server
    env = {"QSTASH_TOKEN": TOKEN, "QSTASH_URL": url}
    message = Published(
        "msg_x", "https://ingest.example.test/api/qstash/instagram-ingestion", {}, b"{}"
    )
    ours = qstash.dead_letter(message, label="instagram-messaging-event")
    qstash.dead_letter(message, label="someone-else")
    listed = ctl("dlq", "list", "--json", **env)
    assert listed.returncode == 0, listed.stderr
    assert [m["dlq_id"] for m in json.loads(listed.stdout)] == [ours]
    redriven = ctl("dlq", "redrive", ours, **env)
    assert redriven.returncode == 0
    assert redriven.stdout.startswith("redriven as msg_")
    assert ctl("dlq", "redrive", "dlq_missing", **env).returncode == 1


def test_dlq_without_qstash_is_a_usage_error(ctl: Callable[..., Any]) -> None:
    assert ctl("dlq", "list").returncode == 2


async def test_send_sample_posts_a_signed_webhook_to_a_running_instance(
    ctl: Callable[..., Any], settings: Settings, backend: PostgresBackend
) -> None:
    with serve(create_app(settings), lifespan="on") as url:
        result = await _run_in_thread(ctl, "send-sample", "--url", url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "accepted"
        await wait_settled(backend)
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def _run_in_thread(ctl: Callable[..., Any], *args: str) -> Any:
    import asyncio

    return await asyncio.to_thread(ctl, *args)
