"""Group commit: concurrent callers share calls and each gets exactly its own results."""

from __future__ import annotations

import asyncio

import pytest

from ingest.delivery.coalesce import Coalescer


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("boom")
        return [item * 10 for item in items]


async def test_a_lone_caller_is_sent_at_once() -> None:
    call = Recorder()
    assert await Coalescer(call).submit([1, 2]) == [10, 20]
    assert call.calls == [[1, 2]]


async def test_callers_in_the_same_tick_share_one_call() -> None:
    call = Recorder()
    coalescer = Coalescer(call)
    results = await asyncio.gather(*(coalescer.submit([n]) for n in range(10)))
    assert results == [[n * 10] for n in range(10)]
    assert call.calls == [list(range(10))]


async def test_callers_arriving_during_a_call_share_the_next_one() -> None:
    call = Recorder()
    coalescer = Coalescer(call)
    first = asyncio.create_task(coalescer.submit([0]))
    await asyncio.sleep(0.001)  # the first call is now in flight
    later = await asyncio.gather(*(coalescer.submit([n]) for n in range(1, 10)))
    assert await first == [0]
    assert later == [[n * 10] for n in range(1, 10)]
    assert call.calls == [[0], list(range(1, 10))]


async def test_the_same_item_from_two_callers_gets_two_positional_results() -> None:
    call = Recorder()
    coalescer = Coalescer(call)
    first, second = await asyncio.gather(coalescer.submit([7]), coalescer.submit([7]))
    assert (first, second) == ([70], [70])


async def test_max_items_splits_calls_but_never_a_callers_items() -> None:
    call = Recorder()
    coalescer = Coalescer(call, max_items=3)
    await asyncio.gather(*(coalescer.submit([n, n]) for n in range(4)))
    assert all(len(items) <= 3 for items in call.calls[1:])
    assert sum(len(items) for items in call.calls) == 8


async def test_a_failure_reaches_every_waiting_caller_and_the_next_call_still_runs() -> None:
    call = Recorder(fail=True)
    coalescer = Coalescer(call)
    results = await asyncio.gather(
        *(coalescer.submit([n]) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    call.fail = False
    assert await coalescer.submit([5]) == [50]


async def test_a_cancelled_caller_does_not_break_the_others() -> None:
    call = Recorder()
    coalescer = Coalescer(call)
    first = asyncio.create_task(coalescer.submit([1]))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(coalescer.submit([2]))
    survivor = asyncio.create_task(coalescer.submit([3]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await first == [10]
    assert await survivor == [30]
    with pytest.raises(asyncio.CancelledError):
        await doomed


class Poisoned:
    """Fails any call that carries the item 13, as a database refuses one bad row."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        await asyncio.sleep(0.01)
        if 13 in items:
            raise ValueError("refused: 13")
        return items


async def test_an_isolated_failure_reaches_only_the_caller_whose_items_caused_it() -> None:
    call = Poisoned()
    coalescer = Coalescer(call, isolate=lambda exc: isinstance(exc, ValueError))
    results = await asyncio.gather(
        *(coalescer.submit([n]) for n in (1, 13, 2)), return_exceptions=True
    )
    assert results[0] == [1]
    assert isinstance(results[1], ValueError)
    assert results[2] == [2]
    assert call.calls == [[1, 13, 2], [1], [13], [2]]


async def test_a_shared_failure_is_not_retried_per_caller() -> None:
    call = Recorder(fail=True)
    coalescer = Coalescer(call, isolate=lambda exc: isinstance(exc, ValueError))
    results = await asyncio.gather(
        *(coalescer.submit([n]) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(call.calls) == 1
