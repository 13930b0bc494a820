"""The relay's one HTTP call, `POST /v2/batch` to QStash, on aiohttp.

Every other outbound call (Graph API, PostgREST, turn hand-offs) shares the app's
httpx client. This one carries up to 100 events at a time, once per hundred events,
and httpx spends 0.7-0.9 ms of CPU on each such call where aiohttp spends 0.18-0.21 ms
(`python -m bench.http_clients`: the same 100-message body, one loopback server,
alternating rounds): 5-7 µs of every relayed event. The session is opened on first
use, inside the running loop, and closed by `aclose` (the relay's owner calls it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=3.0)


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer read whole; header names in lower case."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Raises `ValueError` when the body is not JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class NoReply(Exception):
    """The request got no answer: refused connection, reset, timeout."""


class Poster(Protocol):
    async def post(self, url: str, body: str, headers: Mapping[str, str]) -> Reply: ...

    async def aclose(self) -> None: ...


class AiohttpPoster:
    def __init__(self, timeout: aiohttp.ClientTimeout = TIMEOUT) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: str, headers: Mapping[str, str]) -> Reply:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(url, data=body.encode(), headers=headers) as response:
                payload = await response.read()
                answer = {name.lower(): value for name, value in response.headers.items()}
                return Reply(response.status, answer, payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NoReply(f"{type(exc).__name__}: {exc}"[:200]) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
