"""Reconcile's walk against the Graph double: paging, the window, the 20-message cap,
every error class with HTTP 400, and what a recovered message becomes in the ledger.

The double and the client share a fake clock; admission is the real one on a real
database (its ledger is where a recovered message lands), without a relay.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from contracts import event_from_json
from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from ingest.delivery.admission import Admission
from ingest.graph.client import GraphClients
from ingest.reconcile.lease import LeaseStore
from ingest.reconcile.run import AccountSummary, Reconciler
from storage.postgres import PostgresBackend
from tests.doubles.clock import FakeClock
from tests.doubles.graph_api import BASE_URL, GraphApiDouble, Message
from tests.reconcile_kit import (
    ACCOUNT,
    CUSTOMER,
    OTHER_ACCOUNT,
    TOKEN_A,
    TOKEN_B,
    mid,
    thread,
    usage_header,
)

HOUR = 3600.0


def newer() -> int:
    """A start for a thread newer than the default ones (which end a minute ago)."""
    return int(time.time()) - 30


@dataclass
class World:
    graph: GraphApiDouble
    clock: FakeClock
    backend: PostgresBackend
    reconciler: Reconciler

    async def run(self, window: float = HOUR, **kwargs: Any) -> AccountSummary:
        (summary,) = await self.reconciler.run(window, **kwargs)
        return summary

    async def ledger(self) -> dict[str, dict[str, Any]]:
        rows = await self.backend.pool.fetch("select dedup_id, event from ingest_ledger")
        return {r["dedup_id"]: r["event"] for r in rows}


def make_world(
    backend: PostgresBackend, http: httpx.AsyncClient, graph: GraphApiDouble, clock: FakeClock,
    *accounts: GraphAccount,
) -> World:  # fmt: skip
    accounts = accounts or (GraphAccount(ACCOUNT, Secret(TOKEN_A)),)
    clients = GraphClients(accounts, http, BASE_URL, clock)
    lease = LeaseStore(backend, holder="test")
    return World(graph, clock, backend, Reconciler(backend, clients, Admission(backend), lease))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def graph(clock: FakeClock) -> GraphApiDouble:
    double = GraphApiDouble(clock=clock.now)
    double.add_account(ACCOUNT, TOKEN_A)
    double.add_account(OTHER_ACCOUNT, TOKEN_B, page_id="1122334455")
    return double


@pytest.fixture
async def http(graph: GraphApiDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as client:
        yield client


@pytest.fixture
def world(
    backend: PostgresBackend, http: httpx.AsyncClient, graph: GraphApiDouble, clock: FakeClock
) -> World:
    return make_world(backend, http, graph, clock)


# --- paging and the window ----------------------------------------------------------------


async def test_every_message_of_every_recent_conversation_reaches_the_ledger(
    world: World,
) -> None:
    for n in range(1, 31):  # two pages of conversations
        world.graph.add_conversation(ACCOUNT, thread(3, number=n, customer=f"90000{n:03d}"))
    summary = await world.run()
    assert (summary.outcome, summary.conversations, summary.messages_seen) == ("done", 30, 90)
    assert (summary.recovered, summary.already_stored, summary.errors) == (90, 0, {})
    assert len(await world.ledger()) == 90


async def test_empty_pages_that_still_have_next_are_followed(world: World) -> None:
    for n in range(1, 28):
        world.graph.add_conversation(ACCOUNT, thread(2, number=n))
    world.graph.add_conversation(ACCOUNT, thread(45, number=99))
    world.graph.empty_pages |= {
        (f"{ACCOUNT}/conversations", 0), (f"{ACCOUNT}/conversations", 25),
        ("conv_28/messages", 0), ("conv_28/messages", 20),
    }  # fmt: skip
    summary = await world.run()
    assert (summary.conversations, summary.recovered) == (28, 27 * 2 + 20)
    listing = [c for c in world.graph.calls if c.path.endswith("/conversations")]
    long_thread = [c for c in world.graph.calls if "conv_28" in c.path]
    assert len(listing) == 4  # empty, 25 conversations, empty, 3 conversations
    assert len(long_thread) == 4  # empty, the 20 newest, empty, bare ids (the cap)


async def test_the_walk_stops_below_the_window(world: World) -> None:
    now = int(time.time())
    world.graph.add_conversation(ACCOUNT, thread(4, number=1, start=now - 3 * 86400))
    straddling = thread(6, number=2, start=now - 2 * 3600 - 150, step=60 * 30)
    world.graph.add_conversation(ACCOUNT, straddling)  # 2 h ago … 30 min from now, every 30 min
    summary = await world.run(window=HOUR)
    recent = {m.mid for m in straddling if m.created >= now - HOUR}
    assert summary.conversations == 1
    assert summary.recovered == len(recent) == 3
    assert {f"ig_msg_{m}" for m in recent} == set(await world.ledger())
    assert not [c for c in world.graph.calls if c.path.endswith("conv_1")]


async def test_a_long_thread_gives_its_20_newest_and_counts_the_rest_as_skipped(
    world: World,
) -> None:
    world.graph.add_conversation(ACCOUNT, thread(35))
    summary = await world.run()
    assert (summary.recovered, summary.skipped_20_cap, summary.messages_seen) == (20, 15, 35)
    messages_calls = [c for c in world.graph.calls if "messages" in c.path or "conv_" in c.path]
    assert len(messages_calls) == 2  # the 20 newest, then one page of bare ids: no more


async def test_ids_listed_bare_are_fetched_alone_until_meta_answers_9000001(
    world: World,
) -> None:
    world.graph.details_in_listing = False
    world.graph.add_conversation(ACCOUNT, thread(22))
    summary = await world.run()
    assert (summary.recovered, summary.skipped_20_cap, summary.errors) == (20, 2, {})
    single = [c for c in world.graph.calls if c.path.removeprefix("/v21.0/").startswith("aWdf")]
    assert len(single) == 20  # the 21st is not even asked: it is beyond the cap
    assert summary.messages_seen == 22


async def test_a_message_meta_says_is_deleted_is_skipped_with_code_9000001_and_http_400(
    world: World,
) -> None:
    world.graph.details_in_listing = False
    world.graph.add_conversation(ACCOUNT, thread(3))
    world.graph.fail_next(400, 9000001, message="The message has been deleted", when=mid(1))
    summary = await world.run()
    assert (summary.recovered, summary.skipped_20_cap, summary.errors) == (2, 1, {})


# --- errors, each with HTTP 400 ----------------------------------------------------------------


@pytest.mark.parametrize(("code", "transient"), [(1, False), (2, False), (36000, True)])
async def test_a_temporary_error_asks_again_with_a_smaller_page(
    world: World, code: int, transient: bool
) -> None:
    world.graph.add_conversation(ACCOUNT, thread(5))
    world.graph.fail_next(400, code, transient=transient, when="conv_1")
    summary = await world.run()
    assert (summary.recovered, summary.errors) == (5, {str(code): 1})
    first, second = [c.params["fields"] for c in world.graph.calls if "conv_1" in c.path]
    assert first.startswith("messages.limit(20){") and second.startswith("messages.limit(10){")


async def test_a_temporary_error_that_does_not_pass_skips_that_conversation_only(
    world: World,
) -> None:
    world.graph.add_conversation(ACCOUNT, thread(3, number=1))
    world.graph.add_conversation(ACCOUNT, thread(3, number=2, customer="555"))
    world.graph.fail_next(400, 2, times=10, when="conv_1")
    summary = await world.run()
    assert summary.recovered == 3
    assert summary.errors == {"2": 4}  # 20, 10, 5, 2 messages a page, then given up
    assert all(e["mid"].startswith(mid(0, 2)[:-5]) for e in (await world.ledger()).values())


async def test_error_100_skips_that_object_and_the_walk_goes_on(world: World) -> None:
    world.graph.add_conversation(ACCOUNT, thread(3, number=1))
    world.graph.add_conversation(ACCOUNT, thread(4, number=2, customer="555"))
    world.graph.fail_next(400, 100, message="(#100) Object does not exist", when="conv_2")
    summary = await world.run()
    assert (summary.outcome, summary.conversations, summary.recovered) == ("done", 2, 3)
    assert summary.errors == {"100": 1}


async def test_an_unknown_field_drops_to_a_plainer_field_set(world: World) -> None:
    world.graph.unknown_fields = {"reply_to"}
    world.graph.add_conversation(ACCOUNT, thread(3))
    summary = await world.run()
    assert (summary.recovered, summary.errors) == (3, {})
    asked = [c.params["fields"] for c in world.graph.calls if "conv_1" in c.path]
    assert "reply_to" in asked[0] and "reply_to" not in asked[1]


@pytest.mark.parametrize("code", [190, 102])
async def test_a_token_error_ends_the_account_and_says_so(world: World, code: int) -> None:
    world.graph.add_conversation(ACCOUNT, thread(3, number=1))
    world.graph.add_conversation(ACCOUNT, thread(3, number=2, customer="555", start=newer()))
    world.graph.fail_next(400, code, when="conv_1")  # conv_2 (newer) was walked first
    summary = await world.run()
    assert summary.outcome == "token_rejected"
    assert summary.detail is not None and "replace" in summary.detail
    assert (summary.recovered, summary.errors) == (3, {str(code): 1})
    calls = len(world.graph.calls)
    again = await world.run()
    assert again.outcome == "token_rejected"
    assert len(world.graph.calls) == calls  # stopped: no call until the token is replaced


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80002, 80006])
async def test_a_rate_limit_waits_as_meta_says_and_the_run_completes(
    world: World, code: int
) -> None:
    world.graph.add_conversation(ACCOUNT, thread(3))
    world.graph.fail_next(400, code, when="conv_1", headers=usage_header(minutes=1))
    started = world.clock.now()
    summary = await world.run()
    assert (summary.outcome, summary.recovered) == ("done", 3)
    assert world.clock.now() - started >= 60.0


async def test_a_long_rate_limit_ends_the_run_and_pauses_the_account(world: World) -> None:
    world.graph.add_conversation(ACCOUNT, thread(3))
    world.graph.fail_next(400, 80002, headers=usage_header(minutes=45))
    summary = await world.run()
    assert (summary.outcome, summary.pause_seconds) == ("throttled", 2700.0)
    again = await world.run()
    assert again.outcome == "paused"
    paused = await world.backend.pool.fetchval(
        "select paused_until - now() from ig_reconcile_accounts"
    )
    assert 2600 < paused.total_seconds() <= 2700


# --- accounts, leases, dry runs -----------------------------------------------------------------


async def test_calls_stay_within_two_per_second_per_account_during_a_run(
    backend: PostgresBackend, http: httpx.AsyncClient, graph: GraphApiDouble, clock: FakeClock
) -> None:
    world = make_world(
        backend, http, graph, clock,
        GraphAccount(ACCOUNT, Secret(TOKEN_A)), GraphAccount(OTHER_ACCOUNT, Secret(TOKEN_B),
                                                            "1122334455"),
    )  # fmt: skip
    for n in range(1, 13):
        graph.add_conversation(ACCOUNT, thread(25, number=n, customer=f"700{n}"))
        graph.add_conversation(OTHER_ACCOUNT, thread(3, number=50 + n, account=OTHER_ACCOUNT))
    summaries = await world.reconciler.run(HOUR)
    assert [s.outcome for s in summaries] == ["done", "done"]
    for account in (ACCOUNT, OTHER_ACCOUNT):
        times = sorted(c.at for c in graph.calls_for(account))
        assert len(times) > 12
        assert all(b - a >= 1.0 for a, b in zip(times, times[2:], strict=False)), account
    everyone = sorted(c.at for c in graph.calls)
    assert any(b - a < 1.0 for a, b in zip(everyone, everyone[2:], strict=False))  # per account


async def test_a_page_token_lists_the_pages_conversations(
    backend: PostgresBackend, http: httpx.AsyncClient, graph: GraphApiDouble, clock: FakeClock
) -> None:
    page_account = GraphAccount(OTHER_ACCOUNT, Secret(TOKEN_B), "1122334455")
    world = make_world(backend, http, graph, clock, page_account)
    graph.add_conversation(OTHER_ACCOUNT, thread(2, account=OTHER_ACCOUNT))
    assert (await world.run()).recovered == 2
    assert graph.calls[0].path == "/v21.0/1122334455/conversations"


async def test_one_run_per_account_at_a_time(world: World) -> None:
    world.graph.add_conversation(ACCOUNT, thread(2))
    claim = await LeaseStore(world.backend, holder="elsewhere").claim(ACCOUNT)
    assert claim.claimed
    busy = await world.run()
    assert (busy.outcome, busy.recovered) == ("running", 0)
    assert world.graph.calls == []
    await world.backend.pool.execute("update ig_reconcile_accounts set lease_until = now()")
    assert (await world.run()).recovered == 2  # a lease that ended is claimed again


async def test_a_dry_run_counts_what_it_would_recover_and_admits_nothing(world: World) -> None:
    messages = thread(5)
    world.graph.add_conversation(ACCOUNT, messages)
    await Admission(world.backend).accept([message_event_for(m) for m in messages[:2]])
    summary = await world.run(dry_run=True)
    assert (summary.dry_run, summary.recovered, summary.already_stored) == (True, 3, 2)
    assert len(await world.ledger()) == 2
    status = await LeaseStore(world.backend, holder="t").status()
    assert status[0]["last_summary"]["dry_run"] is True


async def test_what_lands_in_the_ledger_is_the_webhooks_message_event(world: World) -> None:
    inbound, outbound = thread(2)
    world.graph.add_conversation(ACCOUNT, [inbound, outbound])
    await world.run()
    ledger = await world.ledger()
    first = event_from_json(json.dumps(ledger[f"ig_msg_{inbound.mid}"]))
    second = event_from_json(json.dumps(ledger[f"ig_msg_{outbound.mid}"]))
    assert (first.origin, first.account_id, first.sender_id) == ("reconcile", ACCOUNT, CUSTOMER)
    assert (first.direction, second.direction) == ("in", "out")  # type: ignore[union-attr]
    assert first.timestamp == inbound.created * 1000
    assert first.text == inbound.text  # type: ignore[union-attr]
    assert "message" not in first.raw  # the text travels once


def message_event_for(message: Message) -> Any:
    from ingest.graph.messages import message_event

    item = {"id": message.mid, "from": {"id": message.sender}, "message": message.text,
            "to": {"data": [{"id": message.recipient}]}, "created_time": message.created}  # fmt: skip
    return message_event(item, ACCOUNT)


async def test_ids_are_sent_as_one_path_segment_whatever_they_hold(world: World) -> None:
    odd = Message("m_a/b?c=d+e", CUSTOMER, ACCOUNT, int(time.time()) - 60, text="odd id")
    world.graph.details_in_listing = False
    world.graph.add_conversation(ACCOUNT, [odd])
    summary = await world.run()
    assert (summary.recovered, summary.errors) == (1, {})
    assert f"ig_msg_{odd.mid}" not in await world.ledger()  # escaped in the dedup ID …
    (event,) = (await world.ledger()).values()
    assert event["mid"] == odd.mid  # … and kept byte for byte in the event
