"""The Graph token goes only to Meta's hosts, under the versioned path, over
GRAPH_API_URL's scheme: a paging link elsewhere, over plain http, or an id of dots is
never requested."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from contracts.graph import GraphApiError
from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from ingest.reconcile.fetch import FieldLadder, Tally, fetch_message
from storage.postgres import PostgresBackend
from tests.doubles.clock import FakeClock
from tests.reconcile_kit import ACCOUNT, TOKEN_A
from tests.reconcile_mock import (
    HOUR,
    a_message,
    clients_for,
    mocked,
    one_conversation,
    raw,
    recording,
    the_account,
)


async def test_a_paging_next_over_plain_http_is_refused_and_the_token_never_sent_in_clear() -> None:
    sent: list[httpx.URL] = []
    (client,) = clients_for(recording(sent), FakeClock(), the_account()).clients
    with pytest.raises(GraphApiError) as refused:
        await client.follow("http://graph.facebook.com/v21.0/c1/messages?after=QQ")
    assert "outside the Graph API" in refused.value.message
    assert sent == []


async def test_a_paging_next_with_the_configured_scheme_is_followed() -> None:
    sent: list[httpx.URL] = []
    (client,) = clients_for(recording(sent), FakeClock(), the_account()).clients
    with pytest.raises(GraphApiError):  # the handler's answer: code 100
        await client.follow("https://graph.facebook.com/v21.0/c1/messages?after=QQ")
    assert [u.scheme for u in sent] == ["https"]


@pytest.mark.parametrize("odd", ["..", "."])
async def test_a_message_id_of_dots_is_skipped_as_invalid_id_and_never_requested(odd: str) -> None:
    sent: list[httpx.URL] = []
    (client,) = clients_for(recording(sent), FakeClock(), the_account()).clients
    tally = Tally()
    assert await fetch_message(client, odd, tally, FieldLadder()) is None
    assert (sent, dict(tally.errors)) == ([], {"invalid_id": 1})
    with pytest.raises(GraphApiError):  # and the client itself refuses such a path
        await client.get(f"{odd}/me", {})
    assert sent == []


async def test_a_conversation_id_of_dots_is_skipped_and_the_walk_goes_on(
    backend: PostgresBackend,
) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/conversations"):
            data = [{"id": cid, "updated_time": int(time.time())} for cid in ("..", "c2")]
            return raw(json.dumps({"data": data}))
        return raw(json.dumps({"messages": {"data": [a_message("m2", int(time.time()))]}}))

    reconciler = mocked(handler, backend, FakeClock(), GraphAccount(ACCOUNT, Secret(TOKEN_A)))
    (summary,) = await reconciler.run(HOUR)
    assert (summary.outcome, summary.recovered, summary.errors) == ("done", 1, {"invalid_id": 1})
    assert all(p.startswith("/v21.0/") for p in paths) and len(paths) == 2


@pytest.mark.parametrize("next_url", [
    "http://graph.instagram.com/v21.0/c/messages?after=1",
    "https://evil.example/v21.0/c/messages?after=1",
    "https://graph.instagram.com@evil.example/x?after=1",
    "https://graph.instagram.com.evil.example/x?after=1",
    "//evil.example/x?after=1",
    "file:///etc/passwd",
])  # fmt: skip
async def test_a_paging_next_off_meta_hosts_or_off_the_scheme_ends_its_listing_unrequested(
    backend: PostgresBackend, next_url: str
) -> None:
    sent: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url)
        if request.url.path.endswith("/conversations"):
            return raw(one_conversation(TOKEN_A))
        return raw(json.dumps({"messages": {"data": [], "paging": {"next": next_url}}}))

    reconciler = mocked(handler, backend, FakeClock(), the_account())
    (summary,) = await reconciler.run(HOUR)
    assert [(u.scheme, u.host) for u in sent] == [("https", "graph.instagram.com")] * 2
    assert (summary.outcome, summary.errors) == ("done", {"invalid_answer": 1})
