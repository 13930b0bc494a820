"""The database and the relay as `ingestctl` opens them: `relay [--once]`, and the relay
that `replay` runs in-process unless told not to (`--no-wait`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ingest.config.settings import Secret, Settings
from ingest.delivery.relay import Relay
from ingest.delivery.settlement import PassResult
from ingest.ops.output import OK, emit
from storage import Backend


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """The configured database, or the embedded one under `DATA_DIR` (as `make run` uses)."""
    from ingest.components import make_backend

    if settings.uses_embedded_database:
        from storage.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(settings.data_dir / "pg")
        settings = dataclasses.replace(settings, database_url=Secret(server.url()))
    backend = make_backend(settings)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def relay(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """Run the relay in this process: until the backlog is empty (--once) or forever."""
    if args.once:
        done = await relay_until_done(backend, settings)
        emit(args, dict(done.settled), lambda d: "settled: " + (str(d) if d else "nothing"))
        return OK
    async with _relay(backend, settings) as running:
        print("relaying; Ctrl-C to stop", file=sys.stderr)
        await running.run()
    return OK


async def relay_until_done(backend: Backend, settings: Settings) -> PassResult:
    async with _relay(backend, settings) as running:
        return await running.drain()


@asynccontextmanager
async def _relay(backend: Backend, settings: Settings) -> AsyncIterator[Relay]:
    from consumers.processing import Processor
    from ingest.components import make_http_client, make_relay

    http = make_http_client()
    try:
        yield make_relay(settings, backend, Processor(backend), http)
    finally:
        await http.aclose()


async def turns_until_done(backend: Backend, settings: Settings) -> Counter[str]:
    """Hand off every due turn here (after a replay); nothing when turns are off."""
    from ingest.components import make_http_client, make_turn_relay

    http = make_http_client()
    try:
        turns = make_turn_relay(settings, backend, http)
        return (await turns.drain()).settled if turns is not None else Counter()
    finally:
        await http.aclose()
