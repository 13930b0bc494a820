"""`ingestctl reconcile` as an operator runs it: the real console script, real PostgreSQL,
the Graph double as a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV
from tests.doubles.graph_api import GraphApiDouble
from tests.processes import INGESTCTL
from tests.reconcile_kit import ACCOUNT, TOKEN_A, thread, webhook_for

Ctl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ctl(database_url: str, graph_server: tuple[Any, str]) -> Ctl:
    _, graph_url = graph_server

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        full = {**clean, **BASE_ENV, "DATABASE_URL": database_url, "GRAPH_API_URL": graph_url,
                "INSTAGRAM_ACCESS_TOKENS": f"{ACCOUNT}:{TOKEN_A}", **env}  # fmt: skip
        return subprocess.run(
            [INGESTCTL, *args], env={k: v for k, v in full.items() if v}, cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    return run


async def two_of_five_delivered(graph: GraphApiDouble, backend: PostgresBackend) -> None:
    graph.add_account(ACCOUNT, TOKEN_A)
    messages = thread(5)
    graph.add_conversation(ACCOUNT, messages)
    for message in (messages[1], messages[3]):
        events = parse_delivery(json.loads(webhook_for(message)))
        await backend.call(
            "ingest_admit", {"p_events": [e.model_dump(mode="json") for e in events]}
        )


async def in_thread(ctl: Ctl, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The double serves from this process: let its thread answer while the CLI waits."""
    return await asyncio.to_thread(ctl, *args, **env)


async def test_a_dry_run_says_what_it_would_recover_and_admits_nothing(
    ctl: Ctl, graph_online: GraphApiDouble, backend: PostgresBackend
) -> None:
    await two_of_five_delivered(graph_online, backend)
    result = await in_thread(ctl, "reconcile", "--dry-run", "--hours", "2")
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.strip().splitlines()
    assert header.startswith("reconcile since ") and header.endswith("(dry run: nothing admitted)")
    assert line == (
        f"account {ACCOUNT}: done, 1 conversations, 5 messages seen, would recover 3,"
        " already stored 2, beyond the 20-message cap 0"
    )
    assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 2


async def test_a_run_recovers_relays_and_reports(
    ctl: Ctl, graph_online: GraphApiDouble, backend: PostgresBackend
) -> None:
    await two_of_five_delivered(graph_online, backend)
    result = await in_thread(ctl, "reconcile", "--json", "--since", "2000-01-01T00:00:00")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (account,) = report["accounts"]
    assert (account["outcome"], account["recovered"], account["already_stored"]) == ("done", 3, 2)
    assert report["settled"] == {"direct": 5}  # no QStash here: the two webhooks' too
    origins = await backend.pool.fetch("select origin, count(*) n from ig_messages group by 1")
    assert {r["origin"]: r["n"] for r in origins} == {"webhook": 2, "reconcile": 3}
    status = await in_thread(ctl, "reconcile", "--status")
    assert status.stdout.startswith(f"account {ACCOUNT}: idle; last run ")
    assert status.stdout.strip().endswith("→ done, recovered 3")
    again = json.loads((await in_thread(ctl, "reconcile", "--json")).stdout)
    assert (again["accounts"][0]["recovered"], again["settled"]) == (0, {})


async def test_a_refused_token_exits_1_and_says_so_without_showing_it(
    ctl: Ctl, graph_online: GraphApiDouble
) -> None:
    result = await in_thread(ctl, "reconcile")  # the double knows no token: 190, HTTP 400
    assert result.returncode == 1
    assert f"account {ACCOUNT}: token_rejected" in result.stdout
    assert "token rejected (190): replace it" in result.stdout
    assert TOKEN_A not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("reconcile",), {"INSTAGRAM_ACCESS_TOKENS": ""}, "no Graph token"),
        (("reconcile", "--account", "42"), {}, "no configured account 42"),
        (("reconcile", "--hours", "0"), {}, "--hours must be more than 0"),
        (("reconcile", "--hours", "1", "--since", "2026-01-01"), {}, "not allowed with"),
        (("reconcile", "--since", "yesterday"), {}, "not an ISO 8601 time"),
    ],
)
async def test_usage_errors_exit_2(
    ctl: Ctl, graph_online: GraphApiDouble, args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    graph_online.add_account(ACCOUNT, TOKEN_A)
    result = await in_thread(ctl, *args, **env)
    assert result.returncode == 2, result.stdout
    assert says in result.stderr
