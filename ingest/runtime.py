"""Process-level tuning for the long-running entry points: the web server and the worker.

`run` is `asyncio.run` on uvloop's event loop, the loop uvicorn gives the web process:
the worker (`ingestctl relay`) spent a quarter of its CPU in the standard library's
selector loop and transports.

Python's cyclic garbage collector starts a young collection every 700 net allocations
of container objects, and every so often a full one that walks every object alive: the
imported modules, pydantic's schemas and the app's own objects included. On the ack path
that was about a fifth of the app's CPU per request (in-process harness, alternating:
GC on 202-243 µs, off 160-187, tuned as here 151-186). `tune_gc`, called once the app is
built, moves everything alive to the permanent generation (`gc.freeze`: never scanned
again) and lets a young collection wait for 50,000 allocations. Garbage cycles are still
collected, in fewer passes that walk only what was made since.

Only the entry points call it (`ingest.app.app_from_env`, `python -m ingest`, `ingestctl relay`,
`bench.serve`): a test process builds hundreds of apps, whose objects must stay collectable.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

YOUNG_COLLECTION_ALLOCATIONS = 50_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, middle, old)


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop where it is installed (a dependency off Windows)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
