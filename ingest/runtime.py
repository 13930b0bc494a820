"""Process-level tuning for the long-running entry points: the web server and the worker.

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

import gc

YOUNG_COLLECTION_ALLOCATIONS = 50_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, middle, old)
