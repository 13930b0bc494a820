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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

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
        "BREAKER_MAX_EVENTS": "1000000000",
        "SENDER_HOURLY_LIMIT": "1000000000",
        "SENDER_DAILY_LIMIT": "1000000000",
        **extra,
    }


@contextmanager
def server(kind: str, env: dict[str, str]) -> Iterator[int]:
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
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


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


async def consumer_figures(port: int, database_url: str, count: int) -> dict[str, float]:
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
    seconds, statuses = await closed_loop(HOST, port, deliveries, concurrency=32)
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
    await pool.close()
    return {"http": http_rate, "sql": sql_rate, "rows": rows}


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
        url = pg.create_database("bench")
        asyncio.run(apply_migrations(url))
        base_env = service_env(url, "")
        with server("qstash", base_env) as qstash_port:
            double = DoubleStats(f"http://{HOST}:{qstash_port}")
            env = service_env(url, double.url)
            bodies = Path(tmp) / "bodies.tsv"
            write_bodies(bodies, 60_000, "wrk")
            with server("bare", env) as port:
                bare = wrk(port, bodies)
            with server("app", env) as port:
                app = wrk(port, bodies)
                calls = double.requests()
                double.reset()
                lat = asyncio.run(
                    fixed_rate(
                        HOST,
                        port,
                        [meta_request(meta_body(n, "lat")) for n in range(500 * DURATION)],
                        500,
                    )
                )
                batched = [meta_request(meta_body(n, "batch", events=5)) for n in range(400)]
                double.reset()
                asyncio.run(closed_loop(HOST, port, batched, concurrency=32))
                batch_calls = double.requests()
                consumer = asyncio.run(consumer_figures(port, url, 5000))
        pg.cleanup()
    ratio = app["rps"] / bare["rps"]
    consumer_ratio = consumer["http"] / consumer["sql"]
    rows = [
        ("webhook ack throughput (req/s)", f"{app['rps']:.0f}", f"{bare['rps']:.0f} bare",
         f"{ratio:.2f}", ">= 0.5"),
        ("ack latency p50 at 500 req/s (ms)", f"{percentile(lat, 0.5) * 1000:.1f}", "", "", ""),
        ("ack latency p99 at 500 req/s (ms)", f"{percentile(lat, 0.99) * 1000:.1f}", "", "",
         "<= 10"),
        ("consumer (events/s)", f"{consumer['http']:.0f}", f"{consumer['sql']:.0f} SQL loop",
         f"{consumer_ratio:.2f}", ">= 2000/s"),
        ("QStash calls per delivery (1 event)", f"{calls / max(app['requests'], 1):.2f}", "", "",
         "< 1"),
        ("QStash calls per event (5-event deliveries)",
         f"{batch_calls / (len(batched) * 5):.2f}", "", "", "< 1"),
    ]  # fmt: skip
    print(f"load: wrk -t2 -c32 -d{DURATION}s (throughput); asyncio generator (latency, consumer)")
    bad = f"non-2xx: bare {bare['non2xx']}, app {app['non2xx']}"
    print(f"{bad}; consumer rows {consumer['rows']}/5000")
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>8}  {'baseline':>16}  {'ratio':>6}  target")
    for name, value, base, ratio_text, target in rows:
        print(f"{name:<{width}}  {value:>8}  {base:>16}  {ratio_text:>6}  {target}")
    print(f"latency samples: {len(lat)}, mean {statistics.mean(lat) * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
