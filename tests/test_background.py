"""Background work lives in one list: the web process runs it (RELAY_IN_WEB=true, the
default) or leaves all of it to the worker (`ingestctl relay`, the Procfile's `worker:`).

Whichever shape runs, an acknowledged event is published once, and a worker killed in
the middle of a publish (`kill -9`, a real process) is finished by the next one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.app import create_app
from ingest.background.worker import run_worker
from ingest.config.settings import Settings, SettingsError
from storage.postgres import PostgresBackend
from tests.conftest import open_client, wait_settled
from tests.meta import post, text_message
from tests.processes import INGESTCTL, service
from tests.test_crash import child_env, until

EVERY_TASK = {
    "PRUNE_INTERVAL_SECONDS": "3600",
    "INSTAGRAM_ACCESS_TOKENS": "17841400000000001:IGAAbackgroundtoken",
    "RECONCILE_INTERVAL_SECONDS": "3600",
    "RECONCILE_GRACE_SECONDS": "0",
}
BACKGROUND = {"relay", "prune", "reconcile"}


def running_task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}


async def test_the_web_process_runs_every_background_task_by_default(
    qstash_settings: Callable[..., Settings],
) -> None:
    settings = qstash_settings(**EVERY_TASK)
    assert settings.background.in_web
    async for _client in open_client(create_app(settings)):
        assert running_task_names() >= BACKGROUND
    assert not running_task_names() & BACKGROUND  # and stops them with the app


async def test_the_worker_runs_exactly_the_tasks_the_web_process_would(
    qstash_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    settings = qstash_settings(RELAY_IN_WEB="false", **EVERY_TASK)
    async for _client in open_client(create_app(settings)):
        web_tasks = running_task_names()
    worker = asyncio.create_task(run_worker(settings, backend), name="worker")
    for _ in range(200):  # until its tasks run (a busy machine takes more than a tick)
        await asyncio.sleep(0.025)
        in_worker = running_task_names()
        if in_worker >= BACKGROUND:
            break
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert not web_tasks & BACKGROUND
    assert in_worker >= BACKGROUND
    assert not running_task_names() & BACKGROUND


async def test_without_the_relay_the_web_process_acks_and_leaves_events_to_the_worker(
    qstash_settings: Callable[..., Settings], backend: PostgresBackend, qstash: Any
) -> None:
    settings = qstash_settings(RELAY_IN_WEB="false", RELAY_SWEEP_SECONDS="0.05")
    async for client in open_client(create_app(settings)):
        assert (await post(client, text_message("m_web_only"))).json()["new"] == 1
        await asyncio.sleep(0.3)  # six sweeps of a relay, had there been one
        state = await backend.pool.fetchval("select state from ingest_ledger")
    assert state == "pending"
    assert qstash.requests == []
    worker = asyncio.create_task(run_worker(settings, backend))
    assert await wait_settled(backend) == {"published": 1}
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert len(qstash.messages) == 1


def test_relay_in_web_must_say_true_or_false(make_settings: Callable[..., Settings]) -> None:
    assert make_settings(RELAY_IN_WEB="no").background.in_web is False
    with pytest.raises(SettingsError, match="RELAY_IN_WEB"):
        make_settings(RELAY_IN_WEB="sometimes")


async def test_a_worker_killed_while_publishing_is_finished_by_the_next_worker(
    database_url: str,
    qstash_server: tuple[Any, str],
    qstash: Any,
    backend: PostgresBackend,
    tmp_path: Path,
) -> None:
    _, qstash_url = qstash_server
    env = {**child_env(database_url, qstash_url), "RELAY_IN_WEB": "false"}
    bodies = [text_message(f"m_worker_{n}", sender=str(n)) for n in range(3)]

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [INGESTCTL, "relay"], env=env, cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip

    qstash.delay = 3.0  # the publish is in flight when the kill lands
    with service(env, tmp_path) as (url, _web):
        async with httpx.AsyncClient(base_url=url) as meta:
            for body in [*bodies, bodies[0]]:  # Meta redelivers one: a duplicate
                assert (await post(meta, body)).status_code == 200
        first = start_worker()
        await until(lambda: len(qstash.requests) == 1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        qstash.delay = 0.0
        second = start_worker()
        try:
            assert await wait_settled(backend, within=15) == {"published": 3}
        finally:
            second.send_signal(signal.SIGTERM)  # a platform stopping the worker
            returncode = second.wait(timeout=15)
    assert returncode == 0, second.stderr.read() if second.stderr else b""
    assert len(qstash.messages) == 3  # the re-publish reused each dedup ID
