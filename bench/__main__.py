"""`make bench`: throughput and latency, each as a ratio to a baseline measured in the same run.

Everything runs on loopback: embedded PostgreSQL, the QStash double (answering at
once), the service in its own uvicorn process (one worker), wrk for closed-loop
throughput, and a small asyncio generator for fixed-rate latency and the consumer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx

from bench.cpu import CpuMeter, postgres_seconds, postmaster_pid, process_seconds, reading_of
from bench.loadgen import Request, closed_loop, fixed_rate
from bench.serve import BARE_SECRET
from storage.embedded import EmbeddedPostgres
from storage.migrations import apply_migrations
from tests.doubles.qstash import TOKEN, free_port
from tests.doubles.qstash_signer import sign as qstash_sign

HOST = "127.0.0.1"
PUBLIC = "https://ingest.bench.test"
KEY = "sig_bench_current_signing_key_000"
WEBHOOK = "/api/webhooks/instagram"
CONSUMER = "/api/qstash/instagram-ingestion"
DURATION = int(os.environ.get("BENCH_SECONDS", "10"))
ROOT = Path(__file__).resolve().parent


class DoubleStats:
    """The out-of-process QStash double's counters."""

    def __init__(self, url: str) -> None:
        self.url = url

    def requests(self) -> int:
        count: int = httpx.get(f"{self.url}/_stats").json()["requests"]
        return count

    def reset(self) -> None:
        httpx.post(f"{self.url}/_reset")


def service_env(database_url: str, qstash_url: str, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "APP_ENV": "test",
        "DATABASE_URL": database_url,
        "QSTASH_TOKEN": TOKEN,
        "QSTASH_URL": qstash_url,
        "QSTASH_CURRENT_SIGNING_KEY": KEY,
        "QSTASH_NEXT_SIGNING_KEY": KEY + "next",
        "PUBLIC_BASE_URL": PUBLIC,
        "META_APP_SECRETS": BARE_SECRET.decode(),
        "META_VERIFY_TOKEN": "bench",
        "QSTASH_DAILY_MESSAGES": "1000000000",
        "BREAKER_MAX_EVENTS": "1000000000",
        "SENDER_HOURLY_LIMIT": "1000000000",
        "SENDER_DAILY_LIMIT": "1000000000",
        **(TURNS_ENV if os.environ.get("BENCH_TURNS") == "1" else {}),
        **extra,
    }


# BENCH_TURNS=1: conversation turns on (issue 24). The consumer then keeps a turn for every
# message it stores (each bench event is a new customer: a turn opened per event, the worst
# case); the hand-off URL answers nothing, so the relay's turn hand-offs only retry.
TURNS_ENV = {
    "TURN_WEBHOOK_URL": "http://127.0.0.1:9/turns",
    "TURN_WEBHOOK_SECRET": "whsec_YmVuY2gtdHVybi1zZWNyZXQtMDEyMzQ1Njc4OQ==",
}


@contextmanager
def server(kind: str, env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """(port, pid) of `python -m bench.serve kind PORT`, once it accepts connections."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.serve", kind, str(port)],
        env=env, cwd=ROOT.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read() if process.stderr else b""
                raise RuntimeError(f"{kind} server did not start: {stderr!r}") from None
            time.sleep(0.1)
    try:
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def worker(env: dict[str, str]) -> Iterator[int]:
    """The Procfile's `worker:` (`ingestctl relay`): every background task; its pid."""
    process = subprocess.Popen(  # `ingestctl`, from this tree (as `bench.serve` runs)
        [sys.executable, "-m", "ingest.ops.cli", "relay"], env=env, cwd=ROOT.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def settled_down(pid: int, quiet_seconds: float = 0.5, limit: float = 30.0) -> None:
    """Once `pid` has started (imports, connections): no CPU spent for `quiet_seconds`."""
    deadline = time.monotonic() + limit
    before = process_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = process_seconds(pid)
        if now - before < 0.01:
            return
        before = now


def meta_body(n: int, tag: str, events: int = 1) -> bytes:
    items = [
        {
            "sender": {"id": str(10**15 + n)},
            "recipient": {"id": "17841400000000001"},
            "timestamp": 1732500000000 + n,
            "message": {
                "mid": f"m_{tag}_{n}_{e}",
                "text": "Hi! Is the blue one still available? 💙",
            },
        }
        for e in range(events)
    ]
    payload = {
        "object": "instagram",
        "entry": [{"id": "17841400000000001", "time": 1, "messaging": items}],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def meta_request(body: bytes) -> Request:
    signature = "sha256=" + hmac.new(BARE_SECRET, body, hashlib.sha256).hexdigest()
    return Request(
        WEBHOOK, {"Content-Type": "application/json", "X-Hub-Signature-256": signature}, body
    )


def wrk(port: int, bodies_file: Path) -> dict[str, float]:
    result = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{DURATION}s", "--latency", "-s", str(ROOT / "wrk_post.lua"),
         f"http://{HOST}:{port}{WEBHOOK}"],
        env={**os.environ, "BODIES": str(bodies_file)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return {"rps": rps, "requests": total, "non2xx": int(bad.group(1)) if bad else 0}


def write_bodies(path: Path, count: int, tag: str) -> None:
    with path.open("w") as out:
        for n in range(count):
            request = meta_request(meta_body(n, tag))
            out.write(f"{request.headers['X-Hub-Signature-256']}\t{request.body.decode()}\n")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def consumer_figures(
    port: int, database_url: str, count: int, meter: CpuMeter
) -> dict[str, float]:
    import asyncpg

    from contracts import MessageEvent

    def event(n: int, tag: str) -> MessageEvent:
        return MessageEvent(account_id="1", sender_id=str(n), mid=f"c_{tag}_{n}", text="hi", raw={})

    deliveries = []
    for n in range(count):
        body = event(n, "http").model_dump_json().encode()
        headers = {"Content-Type": "application/json",
                   "Upstash-Signature": qstash_sign(body, PUBLIC + CONSUMER, KEY)}  # fmt: skip
        deliveries.append(Request(CONSUMER, headers, body))
    meter.start()
    seconds, statuses = await closed_loop(HOST, port, deliveries, concurrency=32)
    meter.stop()
    http_rate = sum(1 for s in statuses if s == 200) / seconds

    pool = await asyncpg.create_pool(database_url, min_size=8, max_size=8)
    assert pool is not None
    payloads = [event(n, "sql").model_dump_json() for n in range(count)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)

    async def worker() -> None:
        while not queue.empty():
            await pool.fetchval("select ig_apply_event(p_event => $1::jsonb)", queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(32)))
    sql_rate = count / (time.perf_counter() - started)
    rows = await pool.fetchval("select count(*) from ig_messages where mid like 'c_http_%'")
    turned = await pool.fetchval("select count(*) from ig_turn_messages")
    await pool.close()
    return {"http": http_rate, "sql": sql_rate, "rows": rows, "turn_messages": turned}


def pending(database_url: str) -> int:
    async def read() -> int:
        import asyncpg

        conn = await asyncpg.connect(database_url)
        try:
            count: int = await conn.fetchval(
                "select count(*) from ingest_ledger where state = 'pending'"
            )
            return count
        finally:
            await conn.close()

    return asyncio.run(read())


def drain_seconds(database_url: str, limit: float = 60.0) -> float:
    """Seconds after the load until the relay has settled every admitted event."""
    started = time.monotonic()
    while pending(database_url) and time.monotonic() - started < limit:
        time.sleep(0.1)
    return time.monotonic() - started


async def admission_figures(database_url: str, events: int = 10_000) -> dict[str, float]:
    """One `ingest_admit` call of `events` events, against a bare set-based insert of the
    same JSON into a table with the same key (the floor for this shape of work)."""
    import asyncpg

    from ingest.edge.parser import parse_delivery

    body = json.loads(meta_body(0, "admit", events=events))
    payload = json.dumps([e.model_dump(mode="json") for e in parse_delivery(body)])
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "create temp table bare (dedup_id text primary key, event jsonb not null)"
        )
        started = time.perf_counter()
        await conn.execute(
            "insert into bare select e->>'dedup_id', e from jsonb_array_elements($1::jsonb) e"
            " on conflict do nothing",
            payload,
        )
        bare = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("select ingest_admit(p_events => $1::jsonb)", payload)
        ours = time.perf_counter() - started
    finally:
        await conn.close()
    return {"ours": ours, "bare": bare}


async def publish_lags(database_url: str, tag: str) -> list[float]:
    """Admission → QStash-accepted (settled as published), from the ledger's own clock."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "select extract(epoch from published_at - admitted_at)::float8 as lag"
            " from ingest_ledger where dedup_id like $1 and state = 'published'",
            f"ig_msg_m-5F{tag}-5F%",
        )
    finally:
        await conn.close()
    return [r["lag"] for r in rows]


@dataclass
class Measured:
    """One closed-loop run, and the CPU each process spent per event meanwhile."""

    rps: float
    requests: int
    non2xx: int
    settle_seconds: float
    cpu_us: dict[str, float] = field(default_factory=dict)


def measured_wrk(
    port: int, bodies: Path, meter: CpuMeter, settle: Callable[[], object]
) -> Measured:
    """wrk against `port`; CPU from its start until `settle()` returns (the relay done)."""
    meter.start()
    figures = wrk(port, bodies)
    started = time.monotonic()
    settle()
    settled = time.monotonic() - started
    meter.stop()
    requests = int(figures["requests"])
    return Measured(figures["rps"], requests, int(figures["non2xx"]), settled,
                    meter.per_event_us(requests))  # fmt: skip


def cpu_text(cpu: dict[str, float]) -> str:
    return " ".join(f"{name} {us:.0f}" for name, us in cpu.items()) + f" = {sum(cpu.values()):.0f}"


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
        url = pg.create_database("bench")
        split_url = pg.create_database("split")
        for database in (url, split_url):
            asyncio.run(apply_migrations(database))
        postgres = partial(postgres_seconds, postmaster_pid(pg.data_dir))
        base_env = service_env(url, "")
        with server("qstash", base_env) as (qstash_port, qstash_pid):
            double = DoubleStats(f"http://{HOST}:{qstash_port}")
            env = service_env(url, double.url)
            bodies = Path(tmp) / "bodies.tsv"
            write_bodies(bodies, 200_000, "wrk")
            with server("bare", env) as (port, pid):
                bare = measured_wrk(port, bodies, CpuMeter({"bare": reading_of(pid)}), lambda: 0)
            # The default shape: the relay publishes everything from the web process.
            with server("app", env) as (port, pid):
                meter = CpuMeter({"app": reading_of(pid), "postgres": postgres,
                                  "qstash": reading_of(qstash_pid)})  # fmt: skip
                app = measured_wrk(port, bodies, meter, lambda: drain_seconds(url))
                calls = double.requests()
                published = min(app.requests, 200_000)
                double.reset()
                lat = asyncio.run(
                    fixed_rate(
                        HOST,
                        port,
                        [meta_request(meta_body(n, "lat")) for n in range(500 * DURATION)],
                        500,
                    )
                )
                drain_seconds(url)
                lags = asyncio.run(publish_lags(url, "lat"))
                consumer_meter = CpuMeter({"app": reading_of(pid), "postgres": postgres})
                consumer = asyncio.run(consumer_figures(port, url, 5000, consumer_meter))
            # RELAY_IN_WEB=false: the web process acks, a worker beside it relays (the
            # Procfile's web + worker), both running through the load until drained.
            split_env = service_env(split_url, double.url, RELAY_IN_WEB="false")
            with worker(split_env) as worker_pid, server("app", split_env) as (port, pid):
                settled_down(worker_pid)  # its start-up is not a cost of any event
                meter = CpuMeter({"web": reading_of(pid), "worker": reading_of(worker_pid),
                                  "postgres": postgres,
                                  "qstash": reading_of(qstash_pid)})  # fmt: skip
                ack = measured_wrk(port, bodies, meter, lambda: drain_seconds(split_url, 120))
            admit = asyncio.run(admission_figures(url))
        pg.cleanup()
    ratio = app.rps / bare.rps
    consumer_ratio = consumer["http"] / consumer["sql"]
    rows = [
        ("webhook ack throughput, relay publishing (req/s)", f"{app.rps:.0f}",
         f"{bare.rps:.0f} bare", f"{ratio:.2f}", ">= 0.5"),
        ("webhook ack throughput, web + worker (req/s)", f"{ack.rps:.0f}",
         f"{bare.rps:.0f} bare", f"{ack.rps / bare.rps:.2f}", ">= 0.5"),
        ("relay backlog drained after the load (s)", f"{app.settle_seconds:.1f}", "", "", "<= 30"),
        ("worker's backlog drained after the load (s)", f"{ack.settle_seconds:.1f}", "", "",
         "<= 30"),
        ("QStash calls per event (32 connections)", f"{calls / max(published, 1):.3f}", "", "",
         "<= 0.2"),
        ("ack latency p50 at 500 req/s (ms)", f"{percentile(lat, 0.5) * 1000:.1f}", "", "", ""),
        ("ack latency p99 at 500 req/s (ms)", f"{percentile(lat, 0.99) * 1000:.1f}", "", "",
         "<= 10"),
        ("admission -> QStash-accepted p99 at 500 req/s (ms)",
         f"{percentile(lags, 0.99) * 1000:.0f}", "", "", "<= 250"),
        ("one admission call of 10,000 events (ms)", f"{admit['ours'] * 1000:.0f}",
         f"{admit['bare'] * 1000:.0f} bare insert", f"{admit['ours'] / admit['bare']:.2f}",
         "< 1000"),
        ("consumer (events/s)", f"{consumer['http']:.0f}", f"{consumer['sql']:.0f} SQL loop",
         f"{consumer_ratio:.2f}", ">= 2000/s"),
    ]  # fmt: skip
    print(f"load: wrk -t2 -c32 -d{DURATION}s (throughput); asyncio generator (latency, consumer)"
          f"; turns {'on' if os.environ.get('BENCH_TURNS') == '1' else 'off'}")  # fmt: skip
    bad = f"non-2xx: bare {bare.non2xx}, app {app.non2xx}, web + worker {ack.non2xx}"
    print(f"{bad}; published in the latency run {len(lags)}/{500 * DURATION};"
          f" consumer rows {consumer['rows']}/5000,"
          f" in turns {consumer['turn_messages']}")  # fmt: skip
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>8}  {'baseline':>20}  {'ratio':>6}  target")
    for name, value, base, ratio_text, target in rows:
        print(f"{name:<{width}}  {value:>8}  {base:>20}  {ratio_text:>6}  {target}")
    print(f"latency samples: {len(lat)}, mean {statistics.mean(lat) * 1000:.1f} ms")
    print("CPU per event (µs, /proc/<pid>/stat; load generators not counted):")
    cpu_rows = [
        ("bare endpoint (HMAC + json.loads)", bare.cpu_us),
        ("ack + relay, one process (wrk run until drained)", app.cpu_us),
        ("web acks, worker relays (RELAY_IN_WEB=false)", ack.cpu_us),
        ("consumer (signed QStash deliveries)", consumer_meter.per_event_us(5000)),
    ]
    width = max(len(r[0]) for r in cpu_rows)
    for name, cpu in cpu_rows:
        print(f"  {name:<{width}}  {cpu_text(cpu)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
