"""Crash drills with real processes: `kill -9` in the middle of publishing.

The service (uvicorn, as the Procfile runs it) and `ingestctl` run as child processes
against the session's PostgreSQL and the QStash double; the double is slowed so that
the kill lands while a publish is in flight. What must hold: the event is stored once
and published at most once, within the lease plus a few seconds, with no help from Meta.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV, forward_to_consumer, open_client, wait_settled
from tests.doubles.qstash import TOKEN
from tests.meta import post, text_message
from tests.processes import INGESTCTL, inherited_env, service

LEASE = "2"


def child_env(database_url: str, qstash_url: str) -> dict[str, str]:
    return {
        **inherited_env(),
        **BASE_ENV,
        "DATABASE_URL": database_url,
        "QSTASH_TOKEN": TOKEN,
        "QSTASH_URL": qstash_url,
        "LEDGER_LEASE_SECONDS": LEASE,
        "PUBLISH_BUDGET_SECONDS": "20",
        "LOG_LEVEL": "warning",
    }


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_service_killed_while_publishing_is_finished_by_another_instance(
    database_url: str,
    qstash_server: tuple[Any, str],
    qstash: Any,
    qstash_settings: Callable[..., Settings],
    backend: PostgresBackend,
    tmp_path: Path,
) -> None:
    _, qstash_url = qstash_server
    env = child_env(database_url, qstash_url)
    body = text_message("m_killed")
    qstash.delay = 3.0  # the publish is in flight when the kill lands
    with service(env, tmp_path) as (url, first):
        async with httpx.AsyncClient(base_url=url) as meta:
            assert (await post(meta, body)).json()["new"] == 1
        await until(lambda: len(qstash.requests) == 1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = time.monotonic()
    qstash.delay = 0.0
    with service(env, tmp_path) as (url, _second):
        await asyncio.sleep(2)  # Meta redelivers: a duplicate, it changes nothing
        async with httpx.AsyncClient(base_url=url) as meta:
            assert (await post(meta, body)).json()["duplicate"] == 1
        assert await wait_settled(backend, within=15) == {"published": 1}
    assert time.monotonic() - killed_at < float(LEASE) + 8
    assert len(qstash.messages) == 1  # the re-publish reused the dedup ID
    assert len(qstash.requests) == 2
    async for client in open_client(create_app(qstash_settings())):
        assert await forward_to_consumer(client, qstash) == [200]
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1


async def test_replay_killed_midway_is_finished_by_the_relay(
    database_url: str,
    qstash_server: tuple[Any, str],
    qstash: Any,
    qstash_settings: Callable[..., Settings],
    backend: PostgresBackend,
    tmp_path: Path,
) -> None:
    _, qstash_url = qstash_server
    events = [
        e.model_dump(mode="json")
        for n in range(3)
        for e in parse_delivery(json.loads(text_message(f"m_replay_{n}", sender=str(n))))
    ]
    await backend.call("ingest_admit", {"p_events": events})
    await backend.pool.execute("update ingest_ledger set state = 'held', reason = 'kill_switch'")
    qstash.delay = 3.0
    replaying = await asyncio.create_subprocess_exec(
        INGESTCTL, "replay", "--json",
        env=child_env(database_url, qstash_url), cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    await until(lambda: len(qstash.requests) == 1)
    replaying.send_signal(signal.SIGKILL)
    await replaying.wait()
    assert (
        await backend.pool.fetchval("select count(*) from ingest_ledger where state = 'pending'")
        == 3
    )
    qstash.delay = 0.0
    settings = qstash_settings(LEDGER_LEASE_SECONDS=LEASE)
    async for client in open_client(create_app(settings)):
        assert await wait_settled(backend, within=15) == {"published": 3}
        assert await forward_to_consumer(client, qstash) == [200] * 3
    assert len(qstash.messages) == 3
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 3
