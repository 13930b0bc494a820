"""`make drill`: reliability drills; each prints sent / stored / published / lost.

In-process (the app through httpx's ASGI transport), real PostgreSQL, the QStash
double over real HTTP. "Meta" redelivers anything not answered 200, as Meta does;
"QStash" delivers each published message to the consumer, signed, retrying non-2xx.
The same scenarios, smaller, run as tests (see bench/README.md).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.__main__ import meta_body, meta_request
from bench.serve import BARE_SECRET
from contracts import MessageEvent
from ingest.app import create_app
from ingest.parser import parse_delivery
from ingest.settings import Settings
from storage.embedded import EmbeddedPostgres
from storage.migrations import apply_migrations
from tests.doubles.qstash import TOKEN, QStashDouble, free_port, serve
from tests.doubles.qstash_signer import sign

PUBLIC = "https://ingest.drill.test"
KEY = "sig_drill_current_key_0000000000"
CONSUMER = "/api/qstash/instagram-ingestion"
OUTAGE = float(os.environ.get("DRILL_OUTAGE_SECONDS", "30"))
Row = tuple[str, int, int, int, int]


def settings(database_url: str, qstash_url: str, **extra: str) -> Settings:
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "QSTASH_TOKEN": TOKEN,
        "QSTASH_URL": qstash_url,
        "QSTASH_CURRENT_SIGNING_KEY": KEY,
        "QSTASH_NEXT_SIGNING_KEY": KEY + "n",
        "PUBLIC_BASE_URL": PUBLIC,
        "META_APP_SECRETS": BARE_SECRET.decode(),
        "META_VERIFY_TOKEN": "drill",
        "BREAKER_MAX_EVENTS": "1000000",
        "SENDER_HOURLY_LIMIT": "1000000",
        "SENDER_DAILY_LIMIT": "1000000",
        "LOG_LEVEL": "error",
        "PUBLISH_BUDGET_SECONDS": "1",
        **extra,
    }
    return Settings.from_env(env, env_file=None)


async def meta(client: httpx.AsyncClient, n: int, tag: str, *, redeliver: bool = True) -> int:
    """One delivery, redelivered (like Meta) until it is answered 200."""
    request = meta_request(meta_body(n, tag))
    while True:
        response = await client.post(request.path, content=request.body, headers=request.headers)
        if response.status_code == 200 or not redeliver:
            return response.status_code
        await asyncio.sleep(0.5)


async def qstash_deliver(client: httpx.AsyncClient, double: QStashDouble) -> None:
    """Deliver every published message once, retrying non-2xx like QStash (bounded)."""
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


async def count(client: httpx.AsyncClient, database_url: str, tag: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        stored: int = await conn.fetchval(
            "select count(*) from ig_messages where mid like $1", f"m\\_{tag}\\_%"
        )
        return stored
    finally:
        await conn.close()


async def gather_limited(jobs: list[Callable[[], Awaitable[Any]]], limit: int = 64) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


class Drills:
    def __init__(self, pg: EmbeddedPostgres, double: QStashDouble, qstash_url: str) -> None:
        self.pg, self.double, self.qstash_url = pg, double, qstash_url

    async def run(
        self, name: str, tag: str, body: Callable[..., Awaitable[int]], **env: str
    ) -> Row:
        url = self.pg.create_database(tag)
        await apply_migrations(url)
        self.double.reset()
        app = create_app(settings(url, env.pop("QSTASH_URL", self.qstash_url), **env))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://drill") as client:
                sent = await body(client, url, tag)
                await qstash_deliver(client, self.double)
                stored = await count(client, url, tag)
        published = len(self.double.messages)
        return (name, sent, stored, published, sent - stored)

    async def duplicate_storm(self, client: httpx.AsyncClient, url: str, tag: str) -> int:
        jobs = [lambda n=n: meta(client, n, tag) for _ in range(3) for n in range(1000)]
        await gather_limited(jobs)
        return 1000

    async def qstash_down_first_half(self, client: httpx.AsyncClient, url: str, tag: str) -> int:
        self.double.fail_next(503, times=10_000)
        await gather_limited([lambda n=n: meta(client, n, tag) for n in range(500)])
        self.double.failures.clear()
        await gather_limited([lambda n=n: meta(client, n, tag) for n in range(500, 1000)])
        return 1000

    async def database_down(self, client: httpx.AsyncClient, url: str, tag: str) -> int:
        async def outage() -> None:
            await asyncio.sleep(0.5)
            self.pg.stop()
            await asyncio.sleep(OUTAGE)
            self.pg.start()

        async def steady() -> None:
            for n in range(300):
                await meta(client, n, tag)
                await asyncio.sleep((OUTAGE + 1) / 300)

        await asyncio.gather(outage(), steady())
        return 300

    async def killed_before_publish(self, client: httpx.AsyncClient, url: str, tag: str) -> int:
        from storage.postgres import PostgresBackend

        backend = PostgresBackend(url)
        await backend.open()
        events = [
            e
            for n in range(100)
            for e in parse_delivery(__import__("json").loads(meta_body(n, tag)))
        ]
        limits = {
            "breaker_max_events": 10**6,
            "breaker_window_seconds": 600,
            "sender_hourly_limit": 10**6,
            "sender_daily_limit": 10**6,
            "lease_seconds": 2,
        }
        await backend.call(
            "ingest_admit",
            {"p_events": [e.model_dump(mode="json") for e in events], "p_limits": limits},
        )
        await backend.close()  # ...and the process died here, before publishing
        await asyncio.sleep(2.5)
        await gather_limited([lambda n=n: meta(client, n, tag) for n in range(100)])
        return 100

    async def clock_skew(self, client: httpx.AsyncClient, url: str, tag: str) -> int:
        """The consumer's clock 20 s behind QStash's: tokens look issued in the future."""
        accepted = 0
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
            response = await client.post(CONSUMER, content=body, headers=headers)
            accepted += response.status_code == 200
        return 100 if accepted == 100 else accepted


async def main_async() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
        double = QStashDouble()
        with serve(double.app, free_port()) as qstash_url:
            d = Drills(pg, double, qstash_url)
            rows = [
                await d.run("duplicate storm (1000 x 3, concurrent)", "storm", d.duplicate_storm),
                await d.run("QStash down for the first half", "qdown", d.qstash_down_first_half),
                await d.run(f"database down {OUTAGE:.0f} s mid-run", "dbdown", d.database_down),
                await d.run(
                    "killed between admission and publish",
                    "killed",
                    d.killed_before_publish,
                    LEDGER_LEASE_SECONDS="2",
                ),
                await d.run("consumer clock 20 s behind QStash", "skew", d.clock_skew),
            ]
        pg.cleanup()
    return rows


def main() -> int:
    rows = asyncio.run(main_async())
    width = max(len(r[0]) for r in rows)
    print(f"{'drill':<{width}}  {'sent':>6}  {'stored':>6}  {'published':>9}  {'lost':>5}")
    for name, sent, stored, published, lost in rows:
        print(f"{name:<{width}}  {sent:>6}  {stored:>6}  {published:>9}  {lost:>5}")
    return 0 if all(row[4] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
