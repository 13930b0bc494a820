"""`ingestctl migrate [--list]`: the schema's history, shared with the Supabase CLI.

Both need `DATABASE_URL` (or the embedded database): the history lives in
`supabase_migrations`, which PostgREST does not expose, so `SUPABASE_URL` alone
cannot read it; with Supabase, `supabase db push` / `supabase migration list` do.
`--list` shows what `supabase migration list` shows, from the same table.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ingest.config.settings import Settings
from ingest.ops.output import OK, USAGE, Failed, emit


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.lifecycle.release import wait_and_migrate

    if args.list:
        return await list_migrations(args, settings)
    async with database_url(settings) as url:
        applied = await wait_and_migrate(url, max_wait_seconds=args.wait)
    emit(
        args, {"applied": applied}, lambda d: f"applied: {', '.join(d['applied']) or 'nothing new'}"
    )
    return OK


async def list_migrations(args: argparse.Namespace, settings: Settings) -> int:
    from storage import migrations

    async with database_url(settings) as url:
        states = await migrations.list_migrations(url)
    emit(args, {"migrations": [dataclasses.asdict(s) for s in states]}, _table)
    return OK


def _table(data: dict[str, Any]) -> str:
    lines = [f"{'version':<16}{'name':<28}state"]
    for m in data["migrations"]:
        state = ("applied" if m["applied"] else "pending") + ("" if m["local"] else ", no file")
        lines.append(f"{m['version']:<16}{m['name']:<28}{state}")
    return "\n".join(lines)


@asynccontextmanager
async def database_url(settings: Settings) -> AsyncIterator[str]:
    if settings.database_url is not None:
        yield settings.database_url.reveal()
        return
    if not settings.uses_embedded_database:
        raise Failed("migrations need DATABASE_URL (with Supabase: `supabase db push`)", USAGE)
    from storage.embedded import EmbeddedPostgres

    yield EmbeddedPostgres(settings.data_dir / "pg").url()
