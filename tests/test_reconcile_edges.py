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
from ingest.graph_client import ClientConfig, GraphClients
from ingest.rate_limit import SystemClock
from ingest.reconcile import Reconciler
from ingest.reconcile_lease import LeaseStore
from ingest.reconcile_missing import MissingMessages
from ingest.reconcile_walk import Tally
from ingest.secret import Secret
from storage.postgres import PostgresBackend
from tests.doubles.clock import FakeClock
from tests.doubles.graph_api import BASE_URL, GraphApiDouble
from tests.reconcile_kit import ACCOUNT, CUSTOMER, OTHER_ACCOUNT, TOKEN_A, TOKEN_B, thread

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


# --- the lease lives as long as the run ------------------------------------------------------


def real_time_reconciler(
    backend: PostgresBackend, http: httpx.AsyncClient, lease_seconds: int
) -> Reconciler:
    """Scaled down: a 1 s lease, rate-limit waits of 0.5 s and 1 s (each within max_wait),
    as the defaults allow a 300 s lease against waits of up to 300 s, 3 times, in one call."""
    config = ClientConfig(max_wait_seconds=1.0, backoff_seconds=0.5)
    clients = GraphClients((GraphAccount(ACCOUNT, Secret(TOKEN_A)),), http, BASE_URL,
                           SystemClock(), config)  # fmt: skip
    lease = LeaseStore(backend, holder="run-a", lease_seconds=lease_seconds)
    return Reconciler(backend, clients, Admission(backend), lease)


async def test_the_lease_outlives_rate_limit_waits_so_no_second_run_gets_in(
    backend: PostgresBackend,
) -> None:
    graph = GraphApiDouble()
    graph.add_account(ACCOUNT, TOKEN_A)
    graph.add_conversation(ACCOUNT, thread(3))
    graph.fail_next(400, 4, times=2, when="conv_1")  # waits 0.5 s, then 1 s: past the lease
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as http:
        run_a = asyncio.create_task(real_time_reconciler(backend, http, 1).run(HOUR))
        await asyncio.sleep(1.2)
        b = await LeaseStore(backend, holder="run-b", lease_seconds=60).claim(ACCOUNT)
        (summary,) = await run_a
    assert not b.claimed and b.reason == "running"
    assert (summary.outcome, summary.recovered) == ("done", 3)


async def test_a_lease_found_lost_stops_the_walk_before_it_admits_more(
    backend: PostgresBackend,
) -> None:
    graph = GraphApiDouble()
    graph.add_account(ACCOUNT, TOKEN_A)
    graph.add_conversation(ACCOUNT, thread(3))
    graph.fail_next(400, 4, times=2, when="conv_1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as http:
        run_a = asyncio.create_task(real_time_reconciler(backend, http, 1).run(HOUR))
        await asyncio.sleep(0.2)  # another run took the account over (as after an expiry)
        taken = await backend.pool.fetchval(
            "update ig_reconcile_accounts set lease_token = gen_random_uuid(), "
            "lease_holder = 'run-b' returning lease_token")  # fmt: skip
        (summary,) = await run_a
    assert (summary.outcome, summary.recovered) == ("failed", 0)
    assert summary.detail is not None and "lease was lost" in summary.detail
    assert await backend.pool.fetchval("select count(*) from ingest_ledger") == 0
    row = await backend.pool.fetchrow("select lease_token, lease_holder from ig_reconcile_accounts")
    assert (row["lease_token"], row["lease_holder"]) == (taken, "run-b")  # left as B holds it
