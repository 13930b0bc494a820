"""A clock tests drive: `sleep` moves time on at once, so rate limits and backoffs are
measured in seconds of this clock, never waited for on the wall clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class FakeClock:
    t: float = 1_000.0
    slept: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(seconds, 0.0)
        await asyncio.sleep(0)  # let the other tasks run, as a real sleep would
