"""Hostile and odd input, signed (so Meta's, or a forger holding the secret): one rule.

A signed delivery that is a JSON object with an `entry` array is answered 200 whenever
the database is up, and every event it yields is stored or `failed` with a reason,
never stuck and never lost; what cannot be stored as it is, is made storable at the
edge. No input gets a 500. The cases are the issue's table, each through the whole
flow (webhook → ledger → relay → QStash double → consumer → tables), on real
PostgreSQL and, for the ones the Supabase path treats differently, through a real
PostgREST. `make fuzz` runs the property with more examples (`FUZZ_EXAMPLES`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.app import create_app
from ingest.config.env import settings_from_env
from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.conftest import (
    AUTH_INTERNAL,
    BASE_ENV,
    forward_to_consumer,
    open_client,
    wait_settled,
)
from tests.doubles.qstash import serve
from tests.meta import sign, wire_bytes
from tests.supabase_stack import SERVICE_ROLE_KEY, SupabaseStack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
ACCOUNT, SENDER = "17841400000000001", "1234567890123456"
WEBHOOK = "/api/webhooks/instagram"


def item(mid: str = "m_ok", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "sender": {"id": SENDER},
        "recipient": {"id": ACCOUNT},
        "timestamp": 1732500000001,
        "message": {"mid": mid, "text": text},
        **extra,
    }


def envelope(*items: Any) -> dict[str, Any]:
    return {"object": "instagram", "entry": [{"id": ACCOUNT, "time": 1, "messaging": list(items)}]}


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def raw_body(*item_texts: str) -> bytes:
    """A delivery written by hand, for what `json.dumps` cannot write (NaN, depth, digits)."""
    items = ",".join(item_texts)
    return (
        f'{{"object":"instagram","entry":[{{"id":"{ACCOUNT}","time":1,"messaging":[{items}]}}]}}'
    ).encode()


async def deliver(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    return await client.post(WEBHOOK, content=body, headers=headers)


@pytest.fixture
async def flow(
    qstash_settings: Callable[..., Settings], qstash: Any, backend: PostgresBackend
) -> Any:
    async for client in open_client(create_app(qstash_settings())):
        yield client


async def through(
    client: httpx.AsyncClient, qstash: Any, backend: Any, body: bytes
) -> dict[str, int]:
    """Deliver, let the relay settle, play QStash; the ledger's states afterwards."""
    response = await deliver(client, body)
    assert response.status_code == 200, response.text
    states = await wait_settled(backend, within=20)
    assert set(states) <= {"published", "direct", "failed"}
    assert await forward_to_consumer(client, qstash) == [200] * len(qstash.messages)
    return states


async def stored_kinds(backend: PostgresBackend) -> list[tuple[str, str | None]]:
    rows = await backend.pool.fetch(
        "select kind, event->>'reason' as reason from ig_events order by created_at"
    )
    return [(r["kind"], r["reason"]) for r in rows]


# --- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [200, 300, 960, 100_000], ids=lambda n: f"{n}-deep")
async def test_deep_nesting_is_kept_as_text_and_the_delivery_is_answered(
    flow: httpx.AsyncClient, qstash: Any, backend: PostgresBackend, levels: int
) -> None:
    deep = f'{{"sender":{{"id":"{SENDER}"}},"message":{{"mid":"m_deep","x":{nested(levels)}}}}}'
    good = json.dumps(item("m_good"))
    await through(flow, qstash, backend, raw_body(deep, good))
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1  # the good one
    raw_text = await backend.pool.fetchval(
        "select event->>'raw_text' from ig_events where kind = 'unsupported'"
    )
    assert raw_text.count("[") == levels  # kept whole


async def test_a_lone_surrogate_in_text_is_stored_as_a_replacement_character(
    flow: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    bad = json.dumps(item("m_sur", "half \ud800 a pair"))
    await through(flow, qstash, backend, raw_body(bad, json.dumps(item("m_fine"))))
    texts = dict(await backend.pool.fetch("select mid, text from ig_messages"))
    assert texts == {"m_sur": "half \ufffd a pair", "m_fine": "hello"}


async def test_a_surrogate_sent_as_utf8_bytes_is_stored_cleaned_not_refused(
    flow: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    """`json` reads the bytes ED A0 80 (a surrogate written as UTF-8, which UTF-8 forbids)
    as a lone half: the body must not pass as clean, or `raw` would carry what `jsonb`
    refuses and the delivery would be answered 503 for ever."""
    odd = json.dumps({**item("m_bytes", "a SUR b"), "note": "SUR"}).encode()
    body = raw_body("ODD", json.dumps(item("m_fine"))).replace(b"ODD", odd)
    states = await through(flow, qstash, backend, body.replace(b"SUR", b"\xed\xa0\x80"))
    assert sum(states.values()) == 2
    texts = dict(await backend.pool.fetch("select mid, text from ig_messages"))
    assert texts == {"m_bytes": "a \ufffd b", "m_fine": "hello"}
    note = await backend.pool.fetchval("select raw->>'note' from ig_messages where mid = 'm_bytes'")
    assert note == "\ufffd"


@pytest.mark.parametrize(
    "odd",
    [
        json.dumps(item("m\ud800x")),  # a lone surrogate in a mid
        json.dumps({"sender": {"id": SENDER}, "mystery\ud800": {"a\x00": 1}}),  # unknown item
        json.dumps(item("m" * 3000)),  # a mid beyond any index
        f'{{"sender":{{"id":{"9" * 5000}}},"message":{{"mid":"m_big"}}}}',  # a 5,000-digit id
        '{"sender":{"id":"1"},"timestamp":NaN,"message":{"mid":"m_nan","x":Infinity}}',
        json.dumps(item("m_ts", timestamp=2**62)),  # a time beyond any calendar
        json.dumps({"sender": {"id": SENDER}, "message_edit": {"mid": "m", "num_edit": 2**40}}),
    ],
    ids=["surrogate-mid", "surrogate-item", "long-mid", "huge-int", "nan", "far-time", "num-edit"],
)
async def test_what_cannot_be_held_as_it_is_is_kept_whole_as_an_unsupported_event(
    flow: httpx.AsyncClient, qstash: Any, backend: PostgresBackend, odd: str
) -> None:
    states = await through(flow, qstash, backend, raw_body(odd, json.dumps(item("m_next"))))
    assert sum(states.values()) == 2
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    ledger = await backend.pool.fetchval(
        "select dedup_id from ingest_ledger where kind = 'unsupported'"
    )
    stored = await backend.pool.fetchval(
        "select dedup_id from ig_events where kind = 'unsupported'"
    )
    assert stored == ledger  # the consumer derives exactly the ID the ledger holds
    event = await backend.pool.fetchval("select event from ig_events where dedup_id = $1", stored)
    assert event["raw"] or event["raw_text"]


async def test_a_600_kb_text_is_carried_once_and_the_consumer_takes_it(
    flow: httpx.AsyncClient, qstash: Any, backend: PostgresBackend
) -> None:
    text = "is it in stock? " * 37_500  # 600 KB
    body = wire_bytes(envelope(item("m_long", text)))
    assert len(body) > 600_000
    await through(flow, qstash, backend, body)
    (message,) = qstash.messages
    assert len(message.body) < len(body) + 4096  # the text once, not twice
    assert await backend.pool.fetchval("select length(text) from ig_messages") == len(text)


# A delivery of n events is answered in time linear in n. A fixed limit in seconds flakes on a
# loaded machine; a delivery a tenth the size, answered just before on the same machine (the
# fastest of three), is a baseline that does not, and a step quadratic in the events still
# fails: ten times the events, a hundred times the time. On a quiet machine the full delivery
# takes 0.4-1 s, 9-16 times its baseline; a quadratic step as costly as the rest makes that
# about 30. Under 2 s passes at once; beyond, at most LINEAR times the baseline, never CEILING.
LINEAR = 25
CEILING = 10.0


@pytest.fixture
async def ack_only(make_settings: Callable[..., Settings]) -> Any:
    """The webhook alone (no relay in this process): nothing else runs while it is timed."""
    async for client in open_client(create_app(make_settings(RELAY_IN_WEB="false"))):
        yield client


async def timed(client: httpx.AsyncClient, body: bytes, events: int) -> float:
    started = time.monotonic()
    response = await deliver(client, body)
    elapsed = time.monotonic() - started
    assert (response.status_code, response.json()["new"]) == (200, events), response.text
    return elapsed


def linear_enough(baseline: float, elapsed: float) -> bool:
    return elapsed < 2.0 or elapsed < min(LINEAR * baseline, CEILING)


async def answered_in_linear_time(
    client: httpx.AsyncClient, build: Callable[[int, str], bytes], events: int
) -> float:
    """Time a delivery of `events` (three tries, each against its own baseline); its seconds."""
    tries = []
    for attempt in range(3):
        tenths = [build(events // 10, f"s{attempt}{k}") for k in range(3)]
        baseline = min([await timed(client, tenth, events // 10) for tenth in tenths])
        elapsed = await timed(client, build(events, f"f{attempt}"), events)
        tries.append((round(baseline, 3), round(elapsed, 3)))
        if linear_enough(baseline, elapsed):
            return elapsed
    raise AssertionError(f"not linear in the events: (tenth, full) seconds {tries}")


def thousand_entries(entries: int, tag: str) -> bytes:
    small = {"sender": {"id": "7"}, "recipient": {"id": "8"}, "timestamp": 1}
    return wire_bytes({"object": "instagram", "entry": [
        {"id": ACCOUNT, "time": 1,
         "messaging": [{**small, "message": {"mid": f"{tag}{e}_{i}", "text": "x"}} for i in range(10)]}
        for e in range(entries)
    ]})  # fmt: skip


def one_entry(events: int, tag: str) -> bytes:
    items = [item(f"{tag}_{n}", "hi") for n in range(events)]
    return wire_bytes({"object": "instagram", "entry": [{"id": ACCOUNT, "messaging": items}]})


def test_the_linear_time_check_fails_a_quadratic_step() -> None:
    """The rule, on figures (tenth, full): a quadratic step fails it, a loaded machine does
    not, nor does anything past the ceiling."""
    quiet, loaded, quadratic, crawling = (0.08, 0.7), (0.4, 3.5), (0.08, 7.0), (1.0, 11.0)
    assert [linear_enough(*f) for f in (quiet, loaded, quadratic, crawling)] == [
        True, True, False, False,
    ]  # fmt: skip


async def test_a_thousand_entries_of_ten_items_are_answered_fast(
    ack_only: httpx.AsyncClient,
) -> None:
    assert 900_000 < len(thousand_entries(1000, "f0")) <= 1024 * 1024
    await answered_in_linear_time(ack_only, lambda n, tag: thousand_entries(n // 10, tag), 10_000)


async def test_a_delivery_filling_the_body_limit_is_answered_fast(
    ack_only: httpx.AsyncClient,
) -> None:
    body = one_entry(6000, "f0")
    assert len(body) <= 1024 * 1024
    elapsed = await answered_in_linear_time(ack_only, one_entry, 6000)
    print(f"\n{len(body)} bytes, 6000 events: answered in {elapsed * 1000:.0f} ms")


# --- the internal route: what is not a contract event is 422 -------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"v":2,"kind":"message","account_id":"1","mid":"m","raw":{},"timestamp":'
        + b"9" * 5000
        + b"}",
        json.dumps({"v": 2, "kind": "message_edit", "account_id": "1", "mid": "m", "raw": {},
                    "num_edit": 2**40}).encode(),
        json.dumps({"v": 2, "kind": "message", "account_id": "1", "mid": "m", "raw": {},
                    "timestamp": 2**62}).encode(),
        json.dumps({"v": 2, "kind": "message", "account_id": "1", "mid": "m\ud800", "raw": {}}).encode(),
        b'{"v":2,"kind":"message","account_id":"1","mid":"m","raw":{"x":NaN}}',
    ],
    ids=["huge-int", "num-edit", "far-time", "surrogate-mid", "nan"],
)  # fmt: skip
async def test_the_internal_route_refuses_what_no_event_can_hold_with_422(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post(
        "/api/internal/ingest-event", content=body,
        headers={"Content-Type": "application/json", **AUTH_INTERNAL},
    )  # fmt: skip
    assert response.status_code == 422, response.text


# --- both backends -----------------------------------------------------------------------------


async def test_through_supabase_nul_and_surrogates_are_stored_not_refused(
    supabase: SupabaseStack,
) -> None:
    env = {**BASE_ENV, "SUPABASE_URL": supabase.url, "SUPABASE_SERVICE_ROLE_KEY": SERVICE_ROLE_KEY}
    body = raw_body(
        json.dumps(item("m_nul", "nul\x00here")),
        json.dumps(item("m_sur", "half \ud800")),
        json.dumps(item("m\ud800x")),
    )
    async for client in open_client(create_app(settings_from_env(env, env_file=None))):
        assert (await deliver(client, body)).status_code == 200
        assert await wait_settled(supabase) == {"direct": 3}
    texts = dict(await supabase.fetch("select mid, text from ig_messages"))
    assert texts == {"m_nul": "nul\ufffdhere", "m_sur": "half \ufffd"}
    assert await supabase.fetchval("select count(*) from ig_events") == 1


# --- the property --------------------------------------------------------------------------------

texts = st.text(st.characters(codec=None), max_size=8) | st.sampled_from(
    ["\ud800", "\x00", "a\udfffb", "ok"]
)
scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | texts
)  # fmt: skip
keys = texts | st.sampled_from(
    ["message", "mid", "text", "sender", "recipient", "id", "timestamp", "reaction", "read",
     "message_edit", "num_edit", "attachments", "payload", "field", "value", "is_echo"]
)  # fmt: skip
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(keys, c, max_size=4),
                      max_leaves=15)  # fmt: skip
item_shapes = st.fixed_dictionaries(
    {"sender": st.fixed_dictionaries({"id": texts | st.integers(0, 10**20)})},
    optional={"message": st.dictionaries(keys, values, max_size=4), "timestamp": scalars,
              "recipient": values, "reaction": values, "read": values},
)  # fmt: skip
envelopes = st.fixed_dictionaries(
    {"object": st.sampled_from(["instagram", "page"]) | texts,
     "entry": st.lists(st.dictionaries(
         st.sampled_from(["id", "time", "messaging", "standby", "changes", "field", "value"]) | keys,
         st.lists(item_shapes | values, max_size=3) | values, max_size=4) | values, max_size=3)},
)  # fmt: skip
bodies = (
    envelopes.map(lambda e: json.dumps(e).encode())
    | st.binary(max_size=64)
    | values.map(lambda v: json.dumps(v).encode())
)


@pytest.fixture
def live(database_url: str) -> Iterator[tuple[httpx.Client, str]]:
    """The service on a real port (its relay storing directly), a client of it (one, kept
    alive: a client per example spent 20 ms loading CA certificates), and its database."""
    env = {**BASE_ENV, "DATABASE_URL": database_url}
    with (
        serve(create_app(settings_from_env(env, env_file=None)), lifespan="on") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client, database_url


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=bodies)
def test_any_signed_body_is_answered_200_or_4xx_and_nothing_is_left_pending(
    live: tuple[httpx.Client, str], body: bytes
) -> None:
    client, database_url = live
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body)}
    response = client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code in (200, 400), response.text
    envelope_like = _is_envelope(body)
    assert (response.status_code == 200) is envelope_like
    if envelope_like:
        assert _pending_after_settling(database_url) == 0


def _is_envelope(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("entry"), list)


def _pending_after_settling(database_url: str, within: float = 10.0) -> int:
    import asyncio

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + within
            while True:
                pending: int = await conn.fetchval(
                    "select count(*) from ingest_ledger where state = 'pending'"
                )
                if not pending or time.monotonic() > deadline:
                    return pending
                await asyncio.sleep(0.02)
        finally:
            await conn.close()

    return asyncio.run(count())
