"""`ingestctl relay --once` and `ingestctl replay` publish as the web process would: with
no PUBLIC_BASE_URL they tell QStash the URL the web process resolves (a running ngrok
tunnel, else localhost in development), and outside development, with QStash and no URL
to give it, they refuse before changing anything, saying which variable to set.

ngrok's local API is served for real (the double in `tests/test_base_url.py`); its
address is the module's `NGROK_API`, pointed here at that double or at a closed port."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from ingest.config import base_url
from ingest.config.settings import Settings
from ingest.edge.parser import parse_delivery
from storage.postgres import PostgresBackend
from tests.accounts_kit import ingestctl
from tests.doubles.graph_api import GraphApiDouble
from tests.doubles.qstash import QStashDouble, free_port, serve
from tests.meta import text_message
from tests.reconcile_kit import ACCOUNT, TOKEN_A, thread
from tests.test_base_url import ngrok_api

TUNNEL = "https://tunnel-for-the-cli.ngrok-free.app"


@pytest.fixture
def ngrok(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with serve(ngrok_api([{"public_url": TUNNEL, "proto": "https"}])) as url:
        monkeypatch.setattr(base_url, "NGROK_API", f"{url}/api/tunnels")
        yield


@pytest.fixture
def no_ngrok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base_url, "NGROK_API", f"http://127.0.0.1:{free_port()}/api/tunnels")


async def admit(backend: PostgresBackend, *mids: str) -> None:
    events = [
        e.model_dump(mode="json")
        for mid in mids
        for e in parse_delivery(json.loads(text_message(mid)))
    ]
    await backend.call("ingest_admit", {"p_events": events})


async def states(backend: PostgresBackend) -> dict[str, int]:
    rows = await backend.pool.fetch("select state, count(*) n from ingest_ledger group by 1")
    return {r["state"]: r["n"] for r in rows}


async def hold(backend: PostgresBackend, on: bool) -> None:
    await backend.call(
        "ingest_set_kill_switch", {"p_active": on, "p_reason": "t" if on else None,
                                   "p_by": "t", "p_hold": on},
    )  # fmt: skip


@pytest.mark.usefixtures("ngrok")
async def test_relay_once_and_replay_tell_qstash_the_url_the_web_process_resolves(
    qstash_settings: Callable[..., Settings], make_settings: Callable[..., Settings],
    qstash: QStashDouble, backend: PostgresBackend, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    settings = qstash_settings(PUBLIC_BASE_URL=None)
    await admit(backend, "m_url_once")
    with capture_logs() as logs:
        code, out = await ingestctl(settings, capsys, "relay", "--once", "--json")
    assert (code, json.loads(out)) == (0, {"published": 1})
    assert [(x["url"], x["source"]) for x in logs if x["event"] == "public_base_url"] == [
        (TUNNEL, "ngrok")
    ]

    await hold(backend, True)
    await admit(backend, "m_url_replayed")
    await ingestctl(make_settings(), capsys, "relay", "--once")  # held, as the service would
    await hold(backend, False)
    with capture_logs():
        code, out = await ingestctl(settings, capsys, "replay", "--held", "--json")
    assert (code, json.loads(out)) == (0, {"replayed": 1, "settled": {"published": 1}})

    consumer = f"{TUNNEL}/api/qstash/instagram-ingestion"
    assert [m.destination for m in qstash.messages] == [consumer, consumer]
    assert {m.headers["upstash-failure-callback"] for m in qstash.messages} == {
        f"{TUNNEL}/api/qstash/failures"
    }


@pytest.mark.usefixtures("no_ngrok")
async def test_without_a_public_url_relay_once_and_replay_refuse_and_change_nothing(
    qstash_settings: Callable[..., Settings], make_settings: Callable[..., Settings],
    qstash: QStashDouble, backend: PostgresBackend, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Outside development, QStash cannot call localhost: publishing there would settle
    events as published that no consumer ever receives."""
    settings = qstash_settings(PUBLIC_BASE_URL=None)
    assert not settings.development
    await admit(backend, "m_nowhere_1")
    with capture_logs():
        code, out = await ingestctl(settings, capsys, "relay", "--once")
    assert code == 2
    assert "PUBLIC_BASE_URL is required" in out
    assert await states(backend) == {"pending": 1}

    await hold(backend, True)
    await ingestctl(make_settings(), capsys, "relay", "--once")  # held, as the service would
    await hold(backend, False)
    assert await states(backend) == {"held": 1}
    with capture_logs():
        code, out = await ingestctl(settings, capsys, "replay", "--held")
    assert code == 2 and "PUBLIC_BASE_URL is required" in out
    assert await states(backend) == {"held": 1}  # not returned to pending
    assert qstash.messages == []

    code, out = await ingestctl(settings, capsys, "replay", "--dry-run", "--json")
    assert (code, json.loads(out)) == (0, {"would_replay": 1})  # nothing published: allowed
    code, out = await ingestctl(settings, capsys, "replay", "--no-wait", "--json")
    assert (code, json.loads(out)) == (0, {"replayed": 1})  # the service's relay publishes


@pytest.mark.usefixtures("no_ngrok")
async def test_reconcile_without_a_public_url_refuses_before_recovering_anything(
    qstash_settings: Callable[..., Settings], qstash: QStashDouble, backend: PostgresBackend,
    graph_server: tuple[Any, str], graph_online: GraphApiDouble,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`reconcile` relays what it recovers here too (unless `--no-wait`): the same rule."""
    graph_online.add_account(ACCOUNT, TOKEN_A)
    graph_online.add_conversation(ACCOUNT, thread(3))
    settings = qstash_settings(
        PUBLIC_BASE_URL=None, GRAPH_API_URL=graph_server[1],
        INSTAGRAM_ACCESS_TOKENS=f"{ACCOUNT}:{TOKEN_A}",
    )  # fmt: skip
    with capture_logs():
        code, out = await ingestctl(settings, capsys, "reconcile", "--hours", "2")
    assert code == 2 and "PUBLIC_BASE_URL is required" in out
    assert await states(backend) == {}  # nothing recovered, so nothing left half done
    assert qstash.messages == []
    with capture_logs():
        code, out = await ingestctl(settings, capsys, "reconcile", "--hours", "2", "--no-wait")
    assert code == 0, out
    assert await states(backend) == {"pending": 3}  # for the service's relay to publish
