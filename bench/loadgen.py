"""A small keep-alive HTTP/1.1 load generator on asyncio streams (no client library).

Used for what wrk cannot do here: a fixed request rate with latency measured from
each request's *scheduled* time (so a stall is not hidden: no coordinated omission),
and requests whose bodies are signed per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def encode(self, host: str) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(self.body)}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def closed_loop(
    host: str, port: int, requests: Sequence[Request], concurrency: int
) -> tuple[float, list[int]]:
    """Send every request as fast as `concurrency` connections allow; (seconds, statuses)."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request.encode(f"{host}:{port}"))
    statuses: list[int] = []

    async def worker() -> None:
        conn = await Connection.open(host, port)
        try:
            while not queue.empty():
                statuses.append(await conn.send(queue.get_nowait()))
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, statuses


async def fixed_rate(
    host: str, port: int, requests: Sequence[Request], rate: float, connections: int = 64
) -> list[float]:
    """Latencies (s) of `requests` sent at `rate` per second, from their scheduled times."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(host, port))
    latencies: list[float] = []
    start = time.perf_counter() + 0.05

    async def one(index: int, raw: bytes) -> None:
        scheduled = start + index / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        conn = await pool.get()
        try:
            await conn.send(raw)
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)

    await asyncio.gather(*(one(i, r.encode(f"{host}:{port}")) for i, r in enumerate(requests)))
    while not pool.empty():
        pool.get_nowait().close()
    return latencies
