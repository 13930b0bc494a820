"""Apply `supabase/migrations/*.sql` in order, once each, each inside a transaction.

The files are plain SQL named the way the Supabase CLI names them
(`<timestamp>_<name>.sql`), so `supabase db push` applies the same files to a
hosted project. Here we record what was applied in `ingest_schema_migrations`
and hold an advisory lock so that two release steps never race.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "supabase" / "migrations"
_LOCK_KEY = 0x1A9E57  # arbitrary, constant: "ingest migrations"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @classmethod
    def from_path(cls, path: Path) -> Migration:
        version, _, name = path.stem.partition("_")
        return cls(version=version, name=name or path.stem, sql=path.read_text())


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    return [Migration.from_path(p) for p in sorted(directory.glob("*.sql"))]


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    try:
        return await _apply(conn, discover(directory))
    finally:
        await conn.close()


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        """
        create table if not exists public.ingest_schema_migrations (
            version    text primary key,
            name       text not null,
            checksum   text not null,
            applied_at timestamptz not null default now()
        );
        alter table public.ingest_schema_migrations enable row level security;
        """
    )
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _LOCK_KEY)
        rows = await conn.fetch("select version, checksum from public.ingest_schema_migrations")
        done = {row["version"]: row["checksum"] for row in rows}
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    log.warning("migration_changed_after_apply", version=migration.version)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "insert into public.ingest_schema_migrations (version, name, checksum)"
                    " values ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied.append(migration.version)
    return applied
