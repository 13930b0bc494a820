"""The database and the relay as `ingestctl` opens them: `relay [--once]`, and the relay
that `replay` runs in-process unless told not to (`--no-wait`).

`ingestctl relay` without `--once` is the worker (the Procfile's `worker:`): every
background task (`ingest.background`), not only the relay, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ingest.config.settings import Secret, Settings, SettingsError
from ingest.delivery.relay import Relay
from ingest.delivery.settlement import PassResult
from ingest.ops.output import OK, UNAVAILABLE, USAGE, Failed, emit
from storage import Backend


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[Backend]:
    """The configured database, or the embedded one under `DATA_DIR` (as `make run` uses)
    when the service runs it: started here, it would outlive the command and the service."""
    from ingest.components import make_backend

    if settings.uses_embedded_database:
        from storage.embedded import EmbeddedPostgres, running

        if not running(settings.data_dir / "pg"):
            raise Failed(embedded_down(settings), UNAVAILABLE)
        server = EmbeddedPostgres(settings.data_dir / "pg")
        settings = dataclasses.replace(settings, database_url=Secret(server.url()))
    backend = make_backend(settings)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def embedded_down(settings: Settings) -> str:
    where = settings.data_dir / "pg"
    return f"the embedded database at {where} is not running; start the service (make run)"


def publishing(settings: Settings) -> Settings:
    """The settings to publish with: the public URL QStash calls back, decided as the web
    process decides it (`with_public_base_url`), or a usage error saying what to set.
    Every `ingestctl` command that relays here asks this before it changes anything."""
    from ingest.config.base_url import with_public_base_url

    try:
        return with_public_base_url(settings)
    except SettingsError as exc:
        raise Failed(str(exc), USAGE) from None


async def relay(args: argparse.Namespace, backend: Backend, settings: Settings) -> int:
    """Run the relay in this process: until the backlog is empty (--once) or forever."""
    settings = publishing(settings)
    if args.once:
        done = await relay_until_done(backend, settings)
        emit(args, dict(done.settled), lambda d: "settled: " + (str(d) if d else "nothing"))
        return OK
    from ingest.background.worker import run_worker
    from ingest.runtime import tune_gc

    tune_gc()  # a long-running process, as the web one (`ingest.runtime`)
    print("relaying (and every background task); Ctrl-C to stop", file=sys.stderr)
    worker = asyncio.current_task()
    assert worker is not None
    loop = asyncio.get_running_loop()
    terminated: list[bool] = []

    def terminate() -> None:  # a platform stopping the worker: a clean stop, exit 0
        terminated.append(True)
        worker.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        await run_worker(settings, backend)
    except asyncio.CancelledError:
        if not terminated:
            raise  # Ctrl-C: the CLI says "stopped" and exits 130, as for every command
        return OK
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return OK


async def relay_until_done(backend: Backend, settings: Settings) -> PassResult:
    async with _relay(backend, settings) as running:
        return await running.drain()


@asynccontextmanager
async def _relay(backend: Backend, settings: Settings) -> AsyncIterator[Relay]:
    from consumers.processing import Processor
    from ingest.components import make_relay

    relay = make_relay(settings, backend, Processor(backend))
    try:
        yield relay
    finally:
        await relay.aclose()


async def turns_until_done(backend: Backend, settings: Settings) -> Counter[str]:
    """Hand off every due turn here (after a replay); nothing when turns are off."""
    from ingest.components import make_http_client, make_turn_relay

    http = make_http_client()
    try:
        turns = make_turn_relay(settings, backend, http)
        return (await turns.drain()).settled if turns is not None else Counter()
    finally:
        await http.aclose()
