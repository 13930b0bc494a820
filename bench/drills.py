"""`make drill`: reliability drills; each prints sent / stored / QStash messages / lost.

Real PostgreSQL, the QStash double over real HTTP, and the service either in-process
(httpx's ASGI transport) or as real processes (uvicorn, as the Procfile runs it) where
a drill kills one (`kill -9`) or runs two instances on one database. "Meta" redelivers
anything not answered 200, as Meta does; "QStash" then delivers each accepted message
to the consumer, signed, retrying non-2xx. A drill passes when nothing is lost and no
inbound event cost more than one QStash message.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.__main__ import meta_body, meta_request
from bench.serve import BARE_SECRET
from bench.turn_drill import Report, Shape, TurnDrill
from contracts import MessageEvent
from ingest.app import create_app
from ingest.config.env import settings_from_env
from ingest.logging import configure_logging
from storage.embedded import EmbeddedPostgres
from storage.migrations import apply_migrations
from tests.conftest import META_SECRET
from tests.doubles.qstash import TOKEN, QStashDouble, free_port, serve
from tests.doubles.qstash_signer import sign
from tests.processes import INGESTCTL, inherited_env, service

PUBLIC = "https://ingest.drill.test"
KEY = "sig_drill_current_key_0000000000"
CONSUMER = "/api/qstash/instagram-ingestion"
OUTAGE = float(os.environ.get("DRILL_OUTAGE_SECONDS", "30"))
SCALE = int(os.environ.get("DRILL_EVENTS", "1000"))
LEASE = "2"


@dataclass(frozen=True)
class Row:
    name: str
    sent: int
    stored: int
    messages: int
    seconds: float

    @property
    def lost(self) -> int:
        return self.sent - self.stored

    @property
    def per_event(self) -> float:
        return self.messages / max(self.sent, 1)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.per_event <= 1.0


def environment(database_url: str, qstash_url: str, **extra: str) -> dict[str, str]:
    return {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "QSTASH_TOKEN": TOKEN,
        "QSTASH_URL": qstash_url,
        "QSTASH_CURRENT_SIGNING_KEY": KEY,
        "QSTASH_NEXT_SIGNING_KEY": KEY + "n",
        "PUBLIC_BASE_URL": PUBLIC,
        "META_APP_SECRETS": BARE_SECRET.decode(),
        "META_VERIFY_TOKEN": "drill",
        "QSTASH_DAILY_MESSAGES": "1000000",
        "BREAKER_MAX_EVENTS": "1000000",
        "SENDER_HOURLY_LIMIT": "1000000",
        "SENDER_DAILY_LIMIT": "1000000",
        "LOG_LEVEL": "error",
        "PUBLISH_BUDGET_SECONDS": "1",
        "LEDGER_LEASE_SECONDS": LEASE,
        **extra,
    }


async def meta(client: httpx.AsyncClient, n: int, tag: str) -> None:
    """One delivery, redelivered (like Meta) until it is answered 200."""
    request = meta_request(meta_body(n, tag))
    while True:
        try:
            response = await client.post(
                request.path, content=request.body, headers=request.headers
            )
            if response.status_code == 200:
                return
        except httpx.TransportError:
            pass  # the instance is gone: Meta tries again later
        await asyncio.sleep(0.5)


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.01)


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int = 64) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


async def settled(database_url: str, within: float = 120.0) -> None:
    """Until the relays have settled every admitted event."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while await conn.fetchval("select count(*) from ingest_ledger where state = 'pending'"):
            if time.monotonic() > deadline:
                raise RuntimeError("events left pending")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def stored(database_url: str, tag: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "select count(*) from ig_messages where mid like $1", f"m\\_{tag}\\_%"
        )
        return count
    finally:
        await conn.close()


async def qstash_deliver(client: httpx.AsyncClient, double: QStashDouble) -> None:
    """Deliver every accepted message once, retrying non-2xx like QStash (bounded)."""
    for message in list(double.messages):
        for _ in range(120):
            headers = {
                "Content-Type": "application/json",
                "Upstash-Signature": sign(message.body, message.destination, KEY),
            }
            response = await client.post(CONSUMER, content=message.body, headers=headers)
            if response.status_code == 200:
                break
            await asyncio.sleep(0.5)


class Drills:
    def __init__(self, pg: EmbeddedPostgres, double: QStashDouble, qstash_url: str) -> None:
        self.pg, self.double, self.qstash_url = pg, double, qstash_url
        self.tmp = Path(tempfile.mkdtemp(prefix="drill-"))

    @asynccontextmanager
    async def app(self, url: str, **env: str) -> AsyncIterator[httpx.AsyncClient]:
        settings = settings_from_env(environment(url, self.qstash_url, **env), env_file=None)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://drill") as client:
                yield client

    @contextmanager
    def process(self, url: str, **env: str) -> Any:
        with service(
            {**inherited_env(), **environment(url, self.qstash_url, **env)}, self.tmp
        ) as s:
            yield s

    async def run(self, name: str, tag: str, body: Callable[[str, str], Awaitable[int]]) -> Row:
        url = self.pg.create_database(tag)
        await apply_migrations(url)
        self.double.reset()
        started = time.monotonic()
        sent = await body(url, tag)
        await settled(url)
        async with self.app(url) as client:
            await qstash_deliver(client, self.double)
        return Row(name, sent, await stored(url, tag), len(self.double.messages),
                   time.monotonic() - started)  # fmt: skip

    # --- the drills ---------------------------------------------------------------------

    async def duplicate_storm(self, url: str, tag: str) -> int:
        async with self.app(url) as client:
            jobs = [lambda n=n: meta(client, n, tag) for _ in range(3) for n in range(SCALE)]
            await gather_limited(jobs)
            await settled(url)
        return SCALE

    async def qstash_down_first_half(self, url: str, tag: str) -> int:
        half = SCALE // 2
        async with self.app(url) as client:
            self.double.fail_next(503, times=100_000)
            await gather_limited([lambda n=n: meta(client, n, tag) for n in range(half)])
            await settled(url)
            self.double.failures.clear()
            await gather_limited([lambda n=n: meta(client, n, tag) for n in range(half, SCALE)])
            await settled(url)
        return SCALE

    async def database_down(self, url: str, tag: str) -> int:
        count = 300

        async def outage() -> None:
            await asyncio.sleep(0.5)
            self.pg.stop()
            await asyncio.sleep(OUTAGE)
            self.pg.start()

        async def steady(client: httpx.AsyncClient) -> None:
            for n in range(count):
                await meta(client, n, tag)
                await asyncio.sleep((OUTAGE + 1) / count)

        async with self.app(url) as client:
            await asyncio.gather(outage(), steady(client))
            await settled(url)
        return count

    async def killed_while_publishing(self, url: str, tag: str) -> int:
        """kill -9 while its relay's publish is in flight; another instance finishes."""
        self.double.delay = 3.0
        with self.process(url, PUBLISH_BUDGET_SECONDS="20") as (base, first):
            async with httpx.AsyncClient(base_url=base) as client:
                await gather_limited([lambda n=n: meta(client, n, tag) for n in range(SCALE)])
            await until(lambda: bool(self.double.requests))
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        self.double.delay = 0.0
        with self.process(url):
            await settled(url)
        return SCALE

    @contextmanager
    def worker(self, url: str, **env: str) -> Any:
        """The Procfile's `worker:` (`ingestctl relay`) as a real process."""
        full = {**inherited_env(), **environment(url, self.qstash_url, **env)}
        process = subprocess.Popen(
            [INGESTCTL, "relay"], env=full, cwd=self.tmp,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)

    async def web_and_worker(self, url: str, tag: str) -> int:
        """RELAY_IN_WEB=false: two web processes only ack; a worker relays, is killed -9
        while publishing, and the next worker finishes (after the lease)."""
        self.double.delay = 3.0
        web = {"RELAY_IN_WEB": "false", "PUBLISH_BUDGET_SECONDS": "20"}
        with self.process(url, **web) as (one, _), self.process(url, **web) as (two, _):
            async with AsyncExitStack() as stack:
                a = await stack.enter_async_context(httpx.AsyncClient(base_url=one))
                b = await stack.enter_async_context(httpx.AsyncClient(base_url=two))
                jobs = [lambda n=n: meta(a if n % 2 else b, n, tag) for n in range(SCALE)]
                jobs += [lambda n=n: meta(b if n % 2 else a, n, tag) for n in range(0, SCALE, 3)]
                with self.worker(url, PUBLISH_BUDGET_SECONDS="20") as first:
                    await gather_limited(jobs)
                    await until(lambda: bool(self.double.requests))
                    first.send_signal(signal.SIGKILL)
            self.double.delay = 0.0
            with self.worker(url):
                await settled(url)
        return SCALE

    async def two_instances(self, url: str, tag: str) -> int:
        """Each delivery to either instance at random, a third of them to both at once."""
        rng = random.Random(7)
        with self.process(url) as (one, _), self.process(url) as (two, _):
            async with AsyncExitStack() as stack:
                a = await stack.enter_async_context(httpx.AsyncClient(base_url=one))
                b = await stack.enter_async_context(httpx.AsyncClient(base_url=two))
                jobs: list[Callable[[], Awaitable[Any]]] = []
                for n in range(SCALE):
                    first = rng.choice((a, b))
                    jobs.append(lambda n=n, c=first: meta(c, n, tag))
                    if n % 3 == 0:
                        jobs.append(lambda n=n, c=(b if first is a else a): meta(c, n, tag))
                rng.shuffle(jobs)
                await gather_limited(jobs)
            await settled(url)
        return SCALE

    async def daily_limit_two_instances(self, url: str, tag: str) -> int:
        """QSTASH_DAILY_MESSAGES reached with two instances: the rest is stored directly."""
        limit = str(SCALE // 2)
        with self.process(url, QSTASH_DAILY_MESSAGES=limit) as (one, _), \
                self.process(url, QSTASH_DAILY_MESSAGES=limit) as (two, _):  # fmt: skip
            async with AsyncExitStack() as stack:
                a = await stack.enter_async_context(httpx.AsyncClient(base_url=one))
                b = await stack.enter_async_context(httpx.AsyncClient(base_url=two))
                await gather_limited(
                    [lambda n=n: meta(a if n % 2 else b, n, tag) for n in range(SCALE)]
                )
            await settled(url)
        assert len(self.double.messages) == SCALE // 2, len(self.double.messages)
        return SCALE

    async def clock_skew(self, url: str, tag: str) -> int:
        """The consumer's clock 20 s behind QStash's: tokens look issued in the future."""
        async with self.app(url) as client:
            for n in range(100):
                body = (
                    MessageEvent(account_id="1", sender_id=str(n), mid=f"m_{tag}_{n}", raw={})
                    .model_dump_json()
                    .encode()
                )
                headers = {
                    "Content-Type": "application/json",
                    "Upstash-Signature": sign(body, PUBLIC + CONSUMER, KEY, now=time.time() + 20),
                }
                await client.post(CONSUMER, content=body, headers=headers)
        return 100


async def main_async() -> tuple[list[Row], Report]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
        double = QStashDouble()
        with serve(double.app, free_port()) as qstash_url:
            d = Drills(pg, double, qstash_url)
            rows = [
                await d.run(f"duplicate storm ({SCALE} x 3, concurrent)", "storm",
                            d.duplicate_storm),
                await d.run("QStash down for the first half", "qdown", d.qstash_down_first_half),
                await d.run(f"database down {OUTAGE:.0f} s mid-run", "dbdown", d.database_down),
                await d.run("kill -9 while publishing; another instance", "killed",
                            d.killed_while_publishing),
                await d.run("two instances, random and both at once", "two", d.two_instances),
                await d.run("RELAY_IN_WEB=false: two webs; worker kill -9, next worker",
                            "worker", d.web_and_worker),
                await d.run("daily limit reached, two instances", "daily",
                            d.daily_limit_two_instances),
                await d.run("consumer clock 20 s behind QStash", "skew", d.clock_skew),
            ]  # fmt: skip
            turns = await turn_drill(pg, double, qstash_url, d.tmp)
        pg.cleanup()
    return rows, turns


async def turn_drill(pg: EmbeddedPostgres, double: QStashDouble, qstash_url: str,
                     cwd: Path) -> Report:  # fmt: skip
    """Conversation turns at full size (bench/turn_drill.py): defaults but a 10 s max wait,
    so that a customer writing every second for 25 s spans several turns."""
    url = pg.create_database("turns")
    await apply_migrations(url)
    double.reset()
    env = {**environment(url, qstash_url), "META_APP_SECRETS": META_SECRET}
    return await TurnDrill(url, double, qstash_url, env, Shape(), cwd).run()


def main() -> int:
    configure_logging("error", stream=sys.stderr)
    rows, turns = asyncio.run(main_async())
    width = max(len(r.name) for r in rows)
    print(f"{'drill':<{width}}  {'sent':>6}  {'stored':>6}  {'QStash':>6}  {'per event':>9}"
          f"  {'lost':>5}  {'seconds':>7}")  # fmt: skip
    for r in rows:
        print(f"{r.name:<{width}}  {r.sent:>6}  {r.stored:>6}  {r.messages:>6}  "
              f"{r.per_event:>9.2f}  {r.lost:>5}  {r.seconds:>7.1f}")  # fmt: skip
    print("\nconversation turns (two instances, QStash double delivering, README receiver):")
    for check, ok in turns.checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {check}")
    print("  " + ", ".join(f"{k} {v}" for k, v in turns.figures.items()))
    return 0 if all(r.ok for r in rows) and turns.ok else 1


if __name__ == "__main__":
    sys.exit(main())
