"""Reconcile against answers Meta should not give, and runs that take long: one odd value
skips only its message or conversation, an unforeseen exception ends only its account (and
frees its lease), the lease outlives every wait, and paging stays bounded.

Most tests answer through `httpx.MockTransport` (raw bodies: `1e400`, control characters),
with the real admission on a real database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence

import httpx
import pytest
import structlog

from contracts import Event, ReactionEvent
from ingest.acceptance import Acceptance
from ingest.admission import Admission
from ingest.graph_accounts import GraphAccount
from ingest.graph_client import GraphClients
from ingest.reconcile import Reconciler
from ingest.reconcile_lease import LeaseStore
from ingest.reconcile_missing import MissingMessages
from ingest.reconcile_walk import Tally
from ingest.secret import Secret
from storage.postgres import PostgresBackend
from tests.doubles.clock import FakeClock
from tests.reconcile_kit import ACCOUNT, CUSTOMER, OTHER_ACCOUNT, TOKEN_A, TOKEN_B

HOUR = 3600.0
GRAPH = "https://graph.instagram.com/v21.0"
Handler = Callable[[httpx.Request], httpx.Response]


def raw(body: str, status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=body.encode(),
                          headers={"content-type": "application/json"})  # fmt: skip


def clients_for(handler: Handler, clock: FakeClock, *accounts: GraphAccount) -> GraphClients:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return GraphClients(accounts, http, GRAPH, clock)


def mocked(
    handler: Handler, backend: PostgresBackend, clock: FakeClock, *accounts: GraphAccount,
    sink: Admission | None = None,
) -> Reconciler:  # fmt: skip
    lease = LeaseStore(backend, holder="edges")
    clients = clients_for(handler, clock, *accounts)
    return Reconciler(backend, clients, sink or Admission(backend), lease)


def both_accounts() -> tuple[GraphAccount, GraphAccount]:
    return GraphAccount(ACCOUNT, Secret(TOKEN_A)), GraphAccount(OTHER_ACCOUNT, Secret(TOKEN_B))


def a_message(mid: str, created: object) -> dict[str, object]:
    return {"id": mid, "created_time": created, "from": {"id": CUSTOMER},
            "to": {"data": [{"id": ACCOUNT}]}, "message": "hi"}  # fmt: skip


def one_conversation(token: str) -> str:
    return json.dumps({"data": [{"id": f"c_{token}", "updated_time": int(time.time())}]})


async def lease_of(backend: PostgresBackend, account: str) -> tuple[bool, str | None]:
    row = await backend.pool.fetchrow(
        "select lease_until is not null held, last_outcome from ig_reconcile_accounts "
        "where account_id = $1", account)  # fmt: skip
    return row["held"], row["last_outcome"]


# --- one odd value skips its item; an unforeseen exception ends only its account ----------


@pytest.mark.parametrize(("odd", "counted"), [("created_time", "invalid_message"),
                                              ("paging_next", "invalid_answer")])  # fmt: skip
async def test_an_odd_value_from_meta_skips_only_its_item_and_every_account_finishes(
    backend: PostgresBackend, odd: str, counted: str
) -> None:
    now = int(time.time())

    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params["access_token"]
        if request.url.path.endswith("/conversations"):
            return raw(one_conversation(token))
        good = a_message(f"m_{token}", now)
        if token == TOKEN_B:
            return raw(json.dumps({"messages": {"data": [good]}}))
        if odd == "created_time":  # 1e400 is a valid JSON number: Python reads it as inf
            return raw(json.dumps({"messages": {"data": [good]}}).replace(str(now), "1e400"))
        page = {"data": [], "paging": {"next": f"{GRAPH}/x\u0001y"}}
        return raw(json.dumps({"messages": page}))

    reconciler = mocked(handler, backend, FakeClock(), *both_accounts())
    summaries = {s.account_id: s for s in await reconciler.run(HOUR)}
    assert (summaries[OTHER_ACCOUNT].outcome, summaries[OTHER_ACCOUNT].recovered) == ("done", 1)
    odd_one = summaries[ACCOUNT]
    assert (odd_one.outcome, odd_one.recovered, odd_one.errors) == ("done", 0, {counted: 1})
    assert await lease_of(backend, ACCOUNT) == (False, "done")


class ExplodingFor(Admission):
    """Admission, except that one account's messages raise what nobody foresaw."""

    async def accept(self, events: Sequence[Event]) -> Acceptance:
        if any(e.account_id == ACCOUNT for e in events):
            raise RuntimeError(f"unforeseen, quoting {GRAPH}/x?access_token={TOKEN_A}")
        return await super().accept(events)


async def test_an_unforeseen_exception_ends_only_its_account_frees_its_lease_and_hides_the_token(
    backend: PostgresBackend,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.url.params["access_token"]
        if request.url.path.endswith("/conversations"):
            return raw(one_conversation(token))
        return raw(json.dumps({"messages": {"data": [a_message(f"m_{token}", time.time())]}}))

    sink = ExplodingFor(backend)
    reconciler = mocked(handler, backend, FakeClock(), *both_accounts(), sink=sink)
    with structlog.testing.capture_logs() as logs:
        summaries = {s.account_id: s for s in await reconciler.run(HOUR)}
    assert summaries[OTHER_ACCOUNT].outcome == "done"
    failed = summaries[ACCOUNT]
    assert (failed.outcome, failed.detail) == ("failed", "unexpected RuntimeError")
    assert failed.errors == {"unexpected": 1}
    assert await lease_of(backend, ACCOUNT) == (False, "failed")
    assert TOKEN_A not in repr(logs) + repr(failed.as_dict())


async def test_one_odd_answer_never_kills_the_missing_message_task(
    backend: PostgresBackend,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        created = "1e400" if request.url.path.endswith("/m1") else "1"
        return raw(f'{{"id": "m", "created_time": {created}, "from": {{"id": "{CUSTOMER}"}}}}')

    clock, checked = FakeClock(), list[Tally]()
    clients = clients_for(handler, clock, GraphAccount(ACCOUNT, Secret(TOKEN_A)))
    missing = MissingMessages(backend, clients, ExplodingFor(backend), clock, grace_seconds=1,
                              on_checked=checked.append)  # fmt: skip
    task = asyncio.create_task(missing.run())

    async def checked_once_more(mid: str) -> Tally:
        before = len(checked)
        missing.notice([ReactionEvent(account_id=ACCOUNT, mid=mid, raw={})])
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(checked) > before:
                break
        assert not task.done(), task.exception()
        return checked[-1]

    try:
        assert dict((await checked_once_more("m1")).errors) == {"invalid_message": 1}
        # the sink raises what nobody foresaw: that batch is counted, the task goes on
        assert dict((await checked_once_more("m2")).errors) == {"unexpected": 1}
        assert dict((await checked_once_more("m3")).errors) == {"unexpected": 1}
    finally:
        task.cancel()
