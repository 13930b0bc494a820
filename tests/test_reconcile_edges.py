"""Reconcile against answers Meta should not give, and runs that take long: one odd value
skips only its message or conversation, an unforeseen exception ends only its account (and
frees its lease), the lease outlives every wait, paging stays bounded, and a message no
erasure could recognise is not admitted (a dry run counts erasure as a real run does).
Where the token may go: `tests/test_reconcile_token_paths.py`.

Most tests answer through `httpx.MockTransport` (raw bodies: `1e400`, control characters),
with the real admission on a real database.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
import structlog

from contracts import Event, ReactionEvent
from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from ingest.delivery.acceptance import Acceptance
from ingest.delivery.admission import Admission
from ingest.graph.client import ClientConfig, GraphClients
from ingest.graph.rate_limit import SystemClock
from ingest.reconcile import walk as reconcile_walk
from ingest.reconcile.fetch import Tally
from ingest.reconcile.lease import LeaseStore
from ingest.reconcile.missing import MissingMessages
from ingest.reconcile.run import Reconciler
from storage.postgres import PostgresBackend
from tests.doubles.clock import FakeClock
from tests.doubles.graph_api import BASE_URL, GraphApiDouble, Message
from tests.reconcile_kit import ACCOUNT, CUSTOMER, OTHER_ACCOUNT, TOKEN_A, TOKEN_B, mid, thread
from tests.reconcile_mock import (
    GRAPH,
    HOUR,
    HOUR_INT,
    a_message,
    both_accounts,
    clients_for,
    mocked,
    one_conversation,
    raw,
)
from tests.test_reconcile_walk import World, make_world


@pytest.fixture
async def world(backend: PostgresBackend) -> AsyncIterator[World]:
    """The walk's world (`tests.test_reconcile_walk`): the Graph double on a fake clock."""
    clock = FakeClock()
    graph = GraphApiDouble(clock=clock.now)
    graph.add_account(ACCOUNT, TOKEN_A)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as http:
        yield make_world(backend, http, graph, clock)


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
        token = request.headers["authorization"].removeprefix("Bearer ")
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
        token = request.headers["authorization"].removeprefix("Bearer ")
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


# --- the window and the bounds of paging ----------------------------------------------------


async def test_a_message_listed_out_of_order_below_the_window_hides_no_newer_one(
    world: World,
) -> None:
    now = int(time.time())
    old = Message(mid(99), CUSTOMER, ACCOUNT, now - 3 * 86400, text="old, listed out of order")
    conversation = world.graph.add_conversation(ACCOUNT, thread(5, start=now - 600))
    conversation.messages.insert(1, old)  # newest, OLD, then 4 recent ones
    summary = await world.run(window=HOUR)
    assert (summary.recovered, summary.messages_seen) == (5, 5)
    assert f"ig_msg_{mid(99)}" not in await world.ledger()


async def test_the_walk_reads_on_past_a_straddling_page_and_stops_after_one_all_below(
    world: World,
) -> None:
    now = int(time.time())
    messages = [*thread(15, start=now - 900), *thread(30, number=2, start=now - 5 * HOUR_INT)]
    world.graph.add_conversation(ACCOUNT, messages)  # 15 recent, then 30 older
    summary = await world.run(window=HOUR)
    assert summary.recovered == 15
    pages = [c for c in world.graph.calls if "conv_1" in c.path]
    assert len(pages) == 2  # 15 recent + 5 below, then 20 below: stop


async def test_endless_empty_pages_end_each_listing_after_3_and_say_so(
    backend: PostgresBackend,
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if request.url.path.endswith("/conversations"):
            data = [{"id": f"c{i}", "updated_time": int(time.time())} for i in range(3)]
            return raw(json.dumps({"data": data}))
        after = int(request.url.params.get("after", "0"))  # a fresh cursor every time
        page = {"data": [], "paging": {"next": f"{GRAPH}/x/messages?after={after + 1}"}}
        return raw(json.dumps(page if after else {"messages": page}))

    reconciler = mocked(handler, backend, FakeClock(), GraphAccount(ACCOUNT, Secret(TOKEN_A)))
    (summary,) = await reconciler.run(HOUR)
    assert calls == 1 + 3 * 3
    assert (summary.outcome, summary.errors) == ("done", {"empty_pages": 3})


async def test_a_run_stops_an_account_once_its_call_budget_is_spent(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile_walk, "CALL_BUDGET", 4)
    for n in range(1, 6):
        world.graph.add_conversation(ACCOUNT, thread(2, number=n, customer=f"60{n}"))
    summary = await world.run()
    assert (summary.outcome, summary.recovered, summary.errors) == ("failed", 6, {"call_budget": 1})
    assert summary.detail is not None and "budget of 4" in summary.detail
    assert len(world.graph.calls) == 4
    assert (await LeaseStore(world.backend, holder="t").status())[0]["running"] is False


# --- erasure needs the customer's id --------------------------------------------------------


async def test_a_message_without_its_customers_id_is_not_admitted_so_no_erased_one_slips_in(
    world: World,
) -> None:
    now = int(time.time()) - 120
    normal = Message(mid(1), CUSTOMER, ACCOUNT, now, text="control")
    no_to = Message(mid(2), ACCOUNT, CUSTOMER, now + 1, text="reply, to missing",
                    extra={"to": None})  # fmt: skip
    no_from_id = Message(mid(3), CUSTOMER, ACCOUNT, now + 2, text="from without id",
                         extra={"from": {"username": "erased_person"}})  # fmt: skip
    world.graph.add_conversation(ACCOUNT, [normal, no_to, no_from_id])
    await world.backend.pool.execute("select ig_forget($1, $2)", CUSTOMER, ACCOUNT)
    summary = await world.run()
    assert (summary.recovered, summary.errors) == (0, {"no_customer": 2})  # erased: not new
    states = {r["dedup_id"]: r["state"] for r in await world.backend.pool.fetch(
        "select dedup_id, state from ingest_ledger")}  # fmt: skip
    assert states == {f"ig_msg_{mid(1)}": "erased"}  # the control: the tombstone honoured


async def test_a_dry_run_counts_an_erased_customers_messages_as_the_real_run_does(
    world: World,
) -> None:
    world.graph.add_conversation(ACCOUNT, thread(3, start=int(time.time()) - 600))
    world.graph.add_conversation(ACCOUNT, thread(2, number=2, customer="555"))
    await world.backend.pool.execute("select ig_forget($1, $2)", CUSTOMER, ACCOUNT)
    dry = await world.run(dry_run=True)
    assert await world.backend.pool.fetchval("select count(*) from ingest_ledger") == 0
    real = await world.run()
    assert (dry.recovered, dry.already_stored) == (real.recovered, real.already_stored) == (2, 3)


async def test_skipped_20_cap_is_a_lower_bound_counting_only_the_page_where_the_cap_shows(
    world: World,
) -> None:
    world.graph.add_conversation(ACCOUNT, thread(60, step=30))  # all 60 within the hour
    summary = await world.run()
    assert (summary.recovered, summary.skipped_20_cap, summary.messages_seen) == (20, 20, 40)
    assert len([c for c in world.graph.calls if "conv_1" in c.path]) == 2  # no third page


async def test_a_run_cancelled_mid_wait_frees_its_lease_and_leaves_no_keeper_behind(
    backend: PostgresBackend,
) -> None:
    graph = GraphApiDouble()
    graph.add_account(ACCOUNT, TOKEN_A)
    graph.add_conversation(ACCOUNT, thread(3))
    graph.fail_next(400, 4, times=2, when="conv_1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as http:
        before = asyncio.all_tasks()
        run = asyncio.create_task(real_time_reconciler(backend, http, 60).run(HOUR))
        await asyncio.sleep(0.3)  # waiting out the first rate limit
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert asyncio.all_tasks() - before - {run} == set()
    assert await lease_of(backend, ACCOUNT) == (False, "interrupted")
