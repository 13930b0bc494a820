"""The release step (`Procfile` `release:`): wait for the database, then migrate.

A new deploy often starts while the database is still coming up, so we retry
the first connection with a bounded policy (about a minute in all) instead of
failing the release on the first refused connection.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from ingest.config.env import load_or_exit
from ingest.logging import configure_logging
from storage.migrations import apply_migrations

log = structlog.get_logger(__name__)


async def wait_and_migrate(dsn: str, *, max_wait_seconds: float = 60.0) -> list[str]:
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type((OSError, asyncpg.CannotConnectNowError, TimeoutError)),
        wait=wait_exponential_jitter(multiplier=0.5, max=5.0),
        stop=stop_after_delay(max_wait_seconds),
        reraise=True,
    ):
        with attempt:
            if attempt.retry_state.attempt_number > 1:
                log.info("waiting_for_database", attempt=attempt.retry_state.attempt_number)
            return await apply_migrations(dsn)
    raise AssertionError("unreachable")  # pragma: no cover


def main() -> int:
    settings = load_or_exit()
    configure_logging(settings.log_level)
    if settings.database_url is None:
        log.warning(
            "release_skipped",
            detail="no DATABASE_URL: apply supabase/migrations with `supabase db push`",
        )
        return 0
    applied = asyncio.run(wait_and_migrate(settings.database_url.reveal()))
    log.info("release_done", applied=applied)
    return 0


if __name__ == "__main__":
    sys.exit(main())
