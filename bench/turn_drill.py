"""The conversation-turn drill: one hand-off per customer burst, whatever Meta and QStash
repeat, whichever instance stores what, and whoever is killed.

Two service processes (uvicorn, as the Procfile runs them) on one database behind a
round-robin balancer, the QStash double delivering what it accepts (events to our
consumer, turns to the bot) and the README's receiver as the bot, verifying every
signature with `standardwebhooks`. Phases:

1. `customers` customers each send a 3-message burst; every webhook goes 1–3 times to
   either instance, all shuffled → exactly one turn each, its 3 mids in timestamp order,
   one QStash message per turn;
2. the business echoes a reply to each → no turn more for them; meanwhile (the echoes'
   quiet wait overlaps it),
3. one customer writes every `interval` s for `writing` s → turns of at most
   TURN_MAX_WAIT_SECONDS, every mid in exactly one of them;
4. `kill -9` of the instance that stored a burst, inside its quiet window → the other
   instance hands it off, once.

`make drill` runs it at full size (`bench.drills`); `tests/test_turns_drill.py` a small one.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.doubles.qstash import TOKEN, QStashDouble, serve
from tests.meta import signed_headers
from tests.processes import inherited_env, service
from tests.turn_kit import RECEIVER_PATH, SECRET, Flaky, delivery, item, load_receiver, now_ms

WEBHOOK = "/api/webhooks/instagram"


@dataclass(frozen=True)
class Shape:
    customers: int = 30
    quiet: float = 3.0
    max_wait: float = 10.0
    writing: float = 25.0
    interval: float = 1.0


@dataclass
class Report:
    checks: dict[str, bool] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, **figures: Any) -> None:
        self.checks[name] = ok
        self.figures.update(figures)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


class TurnDrill:
    def __init__(
        self, database_url: str, qstash: QStashDouble, qstash_url: str, env: dict[str, str],
        shape: Shape, cwd: Path,
    ) -> None:  # fmt: skip
        self.database_url, self.qstash, self.qstash_url = database_url, qstash, qstash_url
        self.env, self.shape, self.cwd = env, shape, cwd
        self.answered: list[dict[str, Any]] = []
        self.report = Report()
        self.rng = random.Random(24)

    async def run(self) -> Report:
        bot = Flaky(load_receiver(self.answered))
        with ExitStack() as stack:
            bot_url = stack.enter_context(serve(bot)) + RECEIVER_PATH
            env = {
                **inherited_env(), **self.env,
                "DATABASE_URL": self.database_url, "QSTASH_TOKEN": TOKEN,
                "QSTASH_URL": self.qstash_url, "LEDGER_LEASE_SECONDS": "2",
                "TURN_WEBHOOK_URL": bot_url, "TURN_WEBHOOK_SECRET": SECRET,
                "TURN_QUIET_SECONDS": str(self.shape.quiet),
                "TURN_MAX_WAIT_SECONDS": str(self.shape.max_wait), "LOG_LEVEL": "error",
            }  # fmt: skip
            one, first = stack.enter_context(service(env, self.cwd))
            two, _ = stack.enter_context(service(env, self.cwd))
            self.qstash.deliver_with(self.env["QSTASH_CURRENT_SIGNING_KEY"],
                                     {self.env["PUBLIC_BASE_URL"]: [one, two]})  # fmt: skip
            self.bot_url = bot_url
            await self.bursts([one, two])
            await asyncio.gather(self.echoes([one, two]), self.writer([one, two]))
            await self.killed(one, first, two)
            self.report.figures["bot_requests"] = len(bot.requests)
        return self.report

    # --- phases -------------------------------------------------------------------------

    async def bursts(self, instances: list[str]) -> None:
        t0, n = now_ms(), self.shape.customers
        sends: list[tuple[str, bytes]] = []
        for c in range(n):
            for k in range(3):
                body = delivery(item(f"b{c}_{k}", f"cust{c}", t0 + k * 10, f"part {k}"))
                for _ in range(self.rng.randint(1, 3)):
                    sends.append((self.rng.choice(instances), body))
        self.rng.shuffle(sends)
        started = time.monotonic()
        await self.post_all(sends)
        await self.until_handed_off(n)
        turns = await self.turns()
        in_order = all(
            t["mids"] == [f"b{t['customer_id'][4:]}_{k}" for k in range(3)] for t in turns
        )
        published = len(self.turn_messages())
        self.report.check(
            "bursts: one turn per customer, 3 mids in timestamp order, 1 QStash message each",
            len(turns) == n and in_order and published == n and self.distinct_answered() == n,
            burst_webhooks=len(sends), burst_turns=len(turns), burst_qstash_turn_messages=published,
            burst_seconds=round(time.monotonic() - started, 1),
        )  # fmt: skip

    async def echoes(self, instances: list[str]) -> None:
        before = await self.turns_but_the_writers()
        sends = [
            (instances[c % 2], delivery(item(f"echo{c}", f"cust{c}", now_ms(), "ok", echo=True)))
            for c in range(self.shape.customers)
        ]
        await self.post_all(sends)
        await asyncio.sleep(self.shape.quiet + 1.5)
        after = await self.turns_but_the_writers()
        self.report.check("echoes: no turn more", after == before, echo_new_turns=after - before)

    async def writer(self, instances: list[str]) -> None:
        mids: list[str] = []
        started = time.monotonic()
        while time.monotonic() - started < self.shape.writing:
            mid = f"w{len(mids)}"
            mids.append(mid)
            body = delivery(item(mid, "writer", now_ms(), "still typing"))
            await self.post_all([(instances[len(mids) % 2], body)])
            await asyncio.sleep(self.shape.interval)
        turns = await self.until_settled("writer")
        spans = [t["span"] for t in turns]
        seen = [m for t in turns for m in t["mids"]]
        tolerance = 1.5  # the relay's sweep and the store's own latency
        self.report.check(
            "writer: turns of at most TURN_MAX_WAIT_SECONDS, every mid exactly once",
            sorted(seen) == sorted(mids) and max(spans) <= self.shape.max_wait + tolerance,
            writer_messages=len(mids), writer_turns=len(turns),
            writer_longest_turn_seconds=round(max(spans), 2),
        )  # fmt: skip

    async def killed(self, one: str, first: Any, two: str) -> None:
        self.qstash.hosts[self.env["PUBLIC_BASE_URL"]] = [one]  # only the first stores
        t0 = now_ms()
        await self.post_all(
            [(one, delivery(item(f"k{k}", "killed", t0 + k, "hello?"))) for k in range(3)]
        )
        stored = "select messages = 3 from ig_turns where customer_id = 'killed' and state = 'open'"
        while True:  # all three stored by the first instance, the turn still open
            if await self.fetchval(stored):
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)  # inside the quiet window
        first.wait(timeout=10)
        self.qstash.hosts[self.env["PUBLIC_BASE_URL"]] = [two]
        turns = await self.until_settled("killed")
        handed = [a for a in self.answered if a["customer_id"] == "killed"]
        self.report.check(
            "kill -9 in the quiet window: exactly one hand-off",
            len(turns) == 1 and len(handed) == 1 and turns[0]["mids"] == ["k0", "k1", "k2"],
            killed_turns=len(turns), killed_hand_offs=len(handed),
        )  # fmt: skip

    # --- helpers ------------------------------------------------------------------------

    async def post_all(self, sends: list[tuple[str, bytes]]) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            gate = asyncio.Semaphore(64)

            async def one(base: str, body: bytes) -> None:
                async with gate:
                    response = await http.post(
                        base + WEBHOOK, content=body, headers=signed_headers(body)
                    )
                    assert response.status_code == 200, response.text

            await asyncio.gather(*(one(base, body) for base, body in sends))

    async def turns_but_the_writers(self) -> int:
        """Every turn but those of the writer, who opens its own meanwhile."""
        return sum(t["customer_id"] != "writer" for t in await self.turns())

    def turn_messages(self) -> list[Any]:
        return [m for m in self.qstash.messages if m.destination == self.bot_url]

    def distinct_answered(self) -> int:
        return len({a["turn_id"] for a in self.answered})

    async def turns(self, customer: str | None = None) -> list[dict[str, Any]]:
        db = await asyncpg.connect(self.database_url)
        try:
            rows = await db.fetch(
                "select t.turn_id, t.customer_id, t.state, t.closed_because,"
                " extract(epoch from t.closed_at - t.opened_at)::float8 as span,"
                " array(select m.mid from ig_turn_messages m where m.turn_id = t.turn_id"
                " order by m.sent_at, m.arrived_at) as mids from ig_turns t"
                " where ($1::text is null or t.customer_id = $1) order by t.opened_at",
                customer,
            )
        finally:
            await db.close()
        return [dict(r) for r in rows]

    async def fetchval(self, sql: str) -> Any:
        db = await asyncpg.connect(self.database_url)
        try:
            return await db.fetchval(sql)
        finally:
            await db.close()

    async def until_handed_off(self, n: int, within: float = 90.0) -> None:
        await until(lambda: self.distinct_answered() >= n, within)

    async def until_settled(self, customer: str, within: float = 90.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while True:
            turns = await self.turns(customer)
            if turns and all(t["state"] in ("published", "delivered") for t in turns):
                mine = {t["turn_id"] for t in turns}
                if mine <= {a["turn_id"] for a in self.answered}:
                    return turns
            assert time.monotonic() < deadline, f"turns of {customer} never handed off: {turns}"
            await asyncio.sleep(0.1)


async def until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the drill timed out"
        await asyncio.sleep(0.05)


def main() -> int:
    """`python -m bench.turn_drill`: the full-size turn drill alone (make drill runs it too)."""
    import sys

    from bench.drills import turn_drill
    from storage.embedded import EmbeddedPostgres
    from tests.doubles.qstash import free_port

    async def go() -> Report:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            pg = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
            double = QStashDouble()
            try:
                with serve(double.app, free_port()) as qstash_url:
                    return await turn_drill(pg, double, qstash_url, Path(tmp))
            finally:
                pg.cleanup()

    report = asyncio.run(go())
    for check, ok in report.checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {check}")
    print(", ".join(f"{k} {v}" for k, v in report.figures.items()), file=sys.stdout)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
