"""The Graph client for one account: 2 calls/s, Meta's usage headers, each error class.

Everything runs on a fake clock (tests/doubles/clock.py) shared with the Graph double,
which records when each call arrived: the limits are measured, never slept through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.graph import GraphApiError
from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from ingest.graph.client import GraphClient, Throttled, TokenRejected
from tests.doubles.clock import FakeClock
from tests.doubles.graph_api import BASE_URL, GraphApiDouble

ACCOUNT, OTHER = "17841400000000001", "17841400000000002"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def graph(clock: FakeClock) -> GraphApiDouble:
    double = GraphApiDouble(clock=clock.now)
    double.add_account(ACCOUNT, "IGAA-one")
    double.add_account(OTHER, "IGAA-two")
    return double


@pytest.fixture
async def http(graph: GraphApiDouble) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=graph.app)) as client:
        yield client


def client_for(
    http: httpx.AsyncClient, clock: FakeClock, account: str = ACCOUNT, token: str = "IGAA-one"
) -> GraphClient:
    return GraphClient(GraphAccount(account, Secret(token)), http, BASE_URL, clock)


def most_in_one_second(times: list[float]) -> int:
    """The most calls that started within any one-second window [t, t + 1)."""
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


def usage(minutes: int, percent: int = 100) -> dict[str, str]:
    entry = {"type": "instagram", "call_count": percent, "total_cputime": 10, "total_time": 10,
             "estimated_time_to_regain_access": minutes}  # fmt: skip
    return {"X-Business-Use-Case-Usage": json.dumps({ACCOUNT: [entry]})}


async def test_calls_stay_within_two_per_second_per_account(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble
) -> None:
    one, two = client_for(http, clock), client_for(http, clock, OTHER, "IGAA-two")
    await asyncio.gather(*(c.get("me", {"fields": "user_id"}) for c in [one, two] * 10))
    for account in (ACCOUNT, OTHER):
        times = [c.at for c in graph.calls_for(account)]
        assert len(times) == 10
        assert most_in_one_second(times) == 2
        assert max(times) - min(times) >= 4.0  # ten calls need at least 4 s at 2 per second


@pytest.mark.parametrize("code", [190, 102])
async def test_a_refused_token_stops_the_account_after_one_call(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble, code: int
) -> None:
    graph.fail_next(400, code)
    client = client_for(http, clock)
    with pytest.raises(TokenRejected) as raised:
        await client.get("me/conversations", {"platform": "instagram"})
    assert raised.value.error.code == code
    assert client.stopped is not None and "IGAA" not in client.stopped
    assert len(graph.calls) == 1


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80002, 80006])
async def test_a_rate_limit_waits_as_meta_says_then_calls_again(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble, code: int
) -> None:
    graph.fail_next(400, code, headers=usage(minutes=2))
    started = clock.now()
    me = await client_for(http, clock).get("me", {"fields": "user_id"})
    assert me["user_id"] == ACCOUNT
    first, second = graph.calls
    assert second.at - first.at >= 120.0  # estimated_time_to_regain_access is in minutes
    assert clock.now() - started < 125.0


async def test_a_rate_limit_without_an_estimate_backs_off_exponentially(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble
) -> None:
    graph.fail_next(400, 613, times=2)
    await client_for(http, clock).get("me", {"fields": "user_id"})
    gaps = [b.at - a.at for a, b in zip(graph.calls, graph.calls[1:], strict=False)]
    assert gaps[0] >= 60.0 and gaps[1] >= 120.0


async def test_a_wait_longer_than_the_budget_stops_the_account_for_this_run(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble
) -> None:
    graph.fail_next(400, 80002, headers=usage(minutes=30))
    client = client_for(http, clock)
    with pytest.raises(Throttled) as raised:
        await client.get("me", {"fields": "user_id"})
    assert raised.value.seconds == 1800.0
    with pytest.raises(Throttled):  # the hold stays: no call until it is over
        await client.get("me", {"fields": "user_id"})
    assert len(graph.calls) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-App-Usage": '{"call_count": 95, "total_time": 20, "total_cputime": 20}'},
        usage(minutes=0, percent=92),
    ],
)
async def test_usage_close_to_a_limit_slows_the_next_call_down(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble, headers: dict[str, str]
) -> None:
    graph.usage_headers = headers
    client = client_for(http, clock)
    await client.get("me", {"fields": "user_id"})
    graph.usage_headers = {}
    await client.get("me", {"fields": "user_id"})
    first, second = graph.calls
    assert second.at - first.at >= 60.0


async def test_unreadable_usage_headers_change_nothing(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble
) -> None:
    graph.usage_headers = {"X-App-Usage": "{not json", "X-Business-Use-Case-Usage": "[1]"}
    client = client_for(http, clock)
    for _ in range(3):
        await client.get("me", {"fields": "user_id"})
    assert graph.calls[-1].at - graph.calls[0].at < 2.0


@pytest.mark.parametrize(
    ("code", "transient"), [(1, False), (2, False), (36000, True), (100, False)]
)
async def test_other_errors_go_back_to_the_caller_with_http_400(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble, code: int, transient: bool
) -> None:
    graph.fail_next(400, code, transient=transient)
    with pytest.raises(GraphApiError) as raised:
        await client_for(http, clock).get("me", {"fields": "user_id"})
    assert (raised.value.status, raised.value.code) == (400, code)
    assert len(graph.calls) == 1


async def test_paging_next_is_followed_as_given_and_only_on_graph_hosts(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble
) -> None:
    client = client_for(http, clock)
    await client.follow(f"{BASE_URL}/me?fields=user_id&access_token=IGAA-one&after=QVFI", limit=5)
    assert graph.calls[0].params == {"fields": "user_id", "after": "QVFI", "limit": "5"}
    with pytest.raises(GraphApiError) as raised:
        await client.follow("https://evil.example/v21.0/me?fields=user_id")
    assert raised.value.label == "invalid_answer"
    assert len(graph.calls) == 1


async def test_a_network_failure_is_temporary_and_never_shows_the_url(clock: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(GraphApiError) as raised:
            await client_for(http, clock).get("me", {"fields": "user_id"})
    assert (raised.value.temporary, raised.value.label) == (True, "network")
    assert "IGAA" not in raised.value.message + str(raised.value)


async def test_the_account_id_is_asked_from_me_once_when_not_configured(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble
) -> None:
    client = GraphClient(GraphAccount(None, Secret("IGAA-one")), http, BASE_URL, clock)
    assert client.account_id is None
    assert await client.resolve_account_id() == ACCOUNT
    assert await client.resolve_account_id() == ACCOUNT
    assert [c.params for c in graph.calls] == [{"fields": "user_id,username"}]


async def test_the_token_never_reaches_a_log_line(
    http: httpx.AsyncClient, clock: FakeClock, graph: GraphApiDouble,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)  # httpx would log each URL, token included, at INFO
    graph.fail_next(400, 613, headers=usage(minutes=1))
    graph.fail_next(400, 190)
    with pytest.raises(TokenRejected):
        await client_for(http, clock).get("me", {"fields": "user_id"})
    assert len(graph.calls) == 2
    assert "IGAA-one" not in caplog.text + capsys.readouterr().out
