"""Group commit: concurrent callers share one underlying call, with no added delay.

The first caller's items go out at once. Callers arriving while that call is in
flight queue up, and the next call carries all of them (up to `max_items`). Alone,
a caller pays what it paid before; under load, N round trips become a few. Results
are positional, so each caller gets exactly the results of its own items, even when
two callers submit the same item (the second sees the first's effect, as in SQL).

A shared call that fails fails every caller in it, which is right when the failure is
shared (the database is down) and wrong when one caller's items caused it. Given
`isolate`, a failure it recognises is retried once per caller, alone, so only the
caller whose items are at fault sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        call: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_items: int = 100,
        isolate: Callable[[Exception], bool] | None = None,
    ) -> None:
        self._call = call
        self._max_items = max_items
        self._isolate = isolate
        self._queue: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
        self._task: asyncio.Task[None] | None = None  # referenced, so it is not collected

    async def submit(self, items: Sequence[T]) -> list[R]:
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._flush(self._take())
        finally:
            self._task = None

    async def _flush(self, batch: list[tuple[Sequence[T], asyncio.Future[list[R]]]]) -> None:
        items = [item for own, _ in batch for item in own]
        try:
            results = await self._call(items)
        except Exception as exc:
            if len(batch) > 1 and self._isolate is not None and self._isolate(exc):
                for single in batch:
                    await self._flush([single])
                return
            for _, future in batch:  # every waiting caller learns of it
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for own, future in batch:
            if not future.done():
                future.set_result(results[start : start + len(own)])
            start += len(own)

    def _take(self) -> list[tuple[Sequence[T], asyncio.Future[list[R]]]]:
        taken: list[tuple[Sequence[T], asyncio.Future[list[R]]]] = []
        size = 0
        while self._queue and (not taken or size + len(self._queue[0][0]) <= self._max_items):
            item = self._queue.pop(0)
            taken.append(item)
            size += len(item[0])
        return taken
