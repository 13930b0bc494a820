"""CPU per `/v2/batch` call: httpx (the app's client) against aiohttp (the relay's poster).

`python -m bench.http_clients`: a loopback server answering what QStash answers for a
100-message batch, the same 100-message body posted by each client in turn (rounds
alternate), CPU time of this process per call (`time.process_time`). The server runs
in its own process and is not counted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

from ingest.delivery.poster import AiohttpPoster
from tests.doubles.qstash import free_port

CALLS = 200
ROUNDS = 5
SERVER = """
import json, sys, uvicorn
ANSWER = json.dumps([{"messageId": "msg_%040d" % i} for i in range(100)]).encode()
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": ANSWER})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
BODY = json.dumps(
    [
        {
            "destination": "https://ingest.bench.test/api/qstash/instagram-ingestion",
            "headers": {"Upstash-Deduplication-Id": f"ig_msg_m-5F{n}"},
            "body": "x" * 900,  # about what one event weighs
        }
        for n in range(100)
    ]
)
HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

Call = Callable[[], Awaitable[object]]


async def per_call_us(call: Call) -> float:
    for _ in range(20):  # connections open, caches warm
        await call()
    started = time.process_time()
    for _ in range(CALLS):
        await call()
    return (time.process_time() - started) / CALLS * 1e6


async def measure(url: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"httpx": [], "aiohttp": []}
    async with httpx.AsyncClient() as client:
        poster = AiohttpPoster()

        async def with_httpx() -> object:
            return (await client.post(url, content=BODY, headers=HEADERS)).json()

        async def with_aiohttp() -> object:
            return (await poster.post(url, BODY, HEADERS)).json()

        try:
            for _ in range(ROUNDS):
                figures["httpx"].append(await per_call_us(with_httpx))
                figures["aiohttp"].append(await per_call_us(with_aiohttp))
        finally:
            await poster.aclose()
    return figures


def main() -> int:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        figures = asyncio.run(measure(f"http://127.0.0.1:{port}/v2/batch"))
    finally:
        server.terminate()
        server.wait(timeout=10)
    httpx_us = statistics.median(figures["httpx"])
    aiohttp_us = statistics.median(figures["aiohttp"])
    print(f"CPU per 100-message /v2/batch call, median of {ROUNDS} alternating rounds:")
    print(f"  httpx    {httpx_us:7.0f} µs   {[round(v) for v in figures['httpx']]}")
    print(f"  aiohttp  {aiohttp_us:7.0f} µs   {[round(v) for v in figures['aiohttp']]}")
    print(f"  ratio aiohttp/httpx {aiohttp_us / httpx_us:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
