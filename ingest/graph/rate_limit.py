"""Calls per second per account, on a clock the caller hands in.

Meta allows 2 Conversations API calls per second per Instagram professional account
(Meta's rate-limiting page, "Messenger API for Instagram": developers.facebook.com/
documentation/business-messaging/messenger-platform/overview/rate-limiting).
Every Graph call of one account, reconcile's and the missing-message fetches', goes
through that account's `RateLimiter`, so this process never exceeds it. Time comes from an
injected `Clock`: tests drive a fake one and measure the limit without waiting on the
wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RateLimiter:
    """At most `calls` call starts in any `period` seconds, and none during a cool-down
    (`hold`: Meta said to wait, or usage is close to its limit)."""

    def __init__(self, clock: Clock, *, calls: int = 2, period: float = 1.0) -> None:
        self._clock = clock
        self._calls = calls
        self._period = period
        self._starts: deque[float] = deque()
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until one more call may start, and count it as started."""
        async with self._lock:
            while True:
                now = self._clock.now()
                while self._starts and self._starts[0] <= now - self._period:
                    self._starts.popleft()
                wait = self._not_before - now
                if len(self._starts) >= self._calls:
                    wait = max(wait, self._starts[0] + self._period - now)
                if wait <= 0:
                    self._starts.append(now)
                    return
                await self._clock.sleep(wait)

    def hold(self, seconds: float) -> None:
        """No call starts for `seconds` from now (a longer hold already set stays)."""
        self._not_before = max(self._not_before, self._clock.now() + seconds)

    def held_for(self) -> float:
        """Seconds left of the current hold (0 when none)."""
        return max(0.0, self._not_before - self._clock.now())
