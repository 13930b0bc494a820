"""`python -m ingest` (what `make run` calls): the whole flow on embedded defaults.

With no `DATABASE_URL` and no `SUPABASE_URL` it starts the embedded PostgreSQL
under `DATA_DIR` (default `.data/`), applies the migrations, and serves. With no
`QSTASH_TOKEN` events are processed in-process; the start-up log says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import signal
import socket
import sys
from contextlib import ExitStack

import structlog
import uvicorn

from ingest.app import create_app
from ingest.config.base_url import with_public_base_url
from ingest.config.env import load_or_exit
from ingest.config.settings import Secret, Settings, SettingsError
from ingest.logging import configure_logging
from ingest.runtime import tune_gc
from storage.migrations import apply_migrations

log = structlog.get_logger("ingest")


def prepare(settings: Settings, stack: ExitStack) -> Settings:
    """Start the embedded database when none is configured, and migrate it."""
    if settings.uses_embedded_database:
        from storage.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(settings.data_dir / "pg")
        stack.callback(server.cleanup)  # stops it unless another process still holds it
        settings = dataclasses.replace(settings, database_url=Secret(server.url()))
        log.info("embedded_database", data_dir=str(server.data_dir))
    if settings.database_url is not None:
        applied = asyncio.run(apply_migrations(settings.database_url.reveal()))
        log.info("migrations", applied=applied)
    settings = _with_base_url_or_exit(settings)
    if not settings.publishes_to_qstash:
        log.warning(
            "qstash_disabled",
            detail="QSTASH_TOKEN is not set: events are processed directly in-process",
        )
    return settings


def _with_base_url_or_exit(settings: Settings) -> Settings:
    try:
        return with_public_base_url(settings)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def port_free_or_exit(host: str, port: int) -> None:
    """Before anything starts: a second `make run` is told which variable to change,
    rather than logging "started" and then a bind error."""
    try:
        socket.create_server((host, port)).close()
    except OSError as exc:
        in_use = exc.errno == errno.EADDRINUSE
        why = "address already in use" if in_use else (exc.strerror or str(exc)).lower()
        print(
            f"configuration error: cannot listen on {host}:{port} ({why}); is the service "
            f"already running? Set PORT to a free port, e.g. PORT={port + 1} make run",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """uvicorn re-raises SIGTERM after its graceful shutdown; turn it into a normal exit
    so that the embedded database is stopped on the way out."""
    raise SystemExit(128 + signum)


def main() -> int:
    settings = load_or_exit()
    configure_logging(settings.log_level)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    port_free_or_exit(settings.host, settings.port)
    with ExitStack() as stack:
        settings = prepare(settings, stack)
        app = create_app(settings)
        tune_gc()
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            log_config=None,  # configure_logging routed uvicorn's loggers: keep them so
            access_log=False,
            timeout_graceful_shutdown=20,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
