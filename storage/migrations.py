"""Apply `supabase/migrations/*.sql` in order, once each, with the Supabase CLI's history.

The files are plain SQL named the way the Supabase CLI names them
(`<version>_<name>.sql`), and both tools keep ONE history: the CLI's own table
`supabase_migrations.schema_migrations` (`version`, `statements`, `name`, exactly as
the pinned CLI creates it; `tests/test_supabase_cli.py` compares the two). So
`supabase db push` never re-applies what `ingestctl migrate` (or the release step)
did, nor the reverse, and `supabase migration list` agrees with `ingestctl migrate
--list`. Installs migrated before that kept their history in
`public.ingest_schema_migrations`; its rows are moved over, and the table dropped,
by the first run that finds it.

Each migration runs inside one transaction (with the history row), under an
advisory lock so that two release steps never race.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "supabase" / "migrations"
HISTORY = "supabase_migrations.schema_migrations"
LEGACY_HISTORY = "public.ingest_schema_migrations"
_LOCK_KEY = 0x1A9E57  # arbitrary, constant: "ingest migrations"

# What the Supabase CLI (2.117) runs to create its history table, statement for statement.
_CREATE_HISTORY = f"""
create schema if not exists supabase_migrations;
create table if not exists {HISTORY} (version text not null primary key);
alter table {HISTORY} add column if not exists statements text[];
alter table {HISTORY} add column if not exists name text;
"""
_IGNORED_IN_COMPARISON = re.compile(r"[\s;]+")

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """What the legacy history recorded; used only to adopt its rows."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def same_as(self, statements: list[str]) -> bool:
        """True when `statements` (split by the CLI, or whole by us) are this file's SQL.

        The CLI drops the semicolons and the blank lines between statements; we record
        the file whole. Comparing without whitespace and semicolons fits both.
        """
        return _squash("".join(statements)) == _squash(self.sql)

    @classmethod
    def from_path(cls, path: Path) -> Migration:
        version, _, name = path.stem.partition("_")
        return cls(version=version, name=name or path.stem, sql=path.read_text())


@dataclass(frozen=True, slots=True)
class MigrationState:
    """One line of `ingestctl migrate --list`: a file, an applied version, or both."""

    version: str
    name: str
    local: bool
    applied: bool


def _squash(sql: str) -> str:
    return _IGNORED_IN_COMPARISON.sub("", sql)


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    return [Migration.from_path(p) for p in sorted(directory.glob("*.sql"))]


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    try:
        return await _apply(conn, discover(directory))
    finally:
        await conn.close()


async def list_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[MigrationState]:
    """Every local and every applied version, in order; reads only, changes nothing."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await _applied_names(conn)
    finally:
        await conn.close()
    local = {m.version: m.name for m in discover(directory)}
    states = []
    for version in sorted(local.keys() | applied.keys()):
        name = local.get(version) or applied.get(version) or ""
        states.append(MigrationState(version, name, version in local, version in applied))
    return states


async def _applied_names(conn: asyncpg.Connection) -> dict[str, str | None]:
    """Applied version → name, from the history and, before adoption, the legacy one."""
    applied: dict[str, str | None] = {}
    for table in (LEGACY_HISTORY, HISTORY):
        if await conn.fetchval("select to_regclass($1)", table) is not None:
            rows = await conn.fetch(f"select version, name from {table}")  # noqa: S608
            applied.update((row["version"], row["name"]) for row in rows)
    return applied


async def _apply(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(_CREATE_HISTORY)
        await _adopt_legacy_history(conn, migrations)
        rows = await conn.fetch(f"select version, statements from {HISTORY}")  # noqa: S608
        done = {row["version"]: row["statements"] for row in rows}
        for migration in migrations:
            if migration.version in done:
                statements = done[migration.version]
                if statements is not None and not migration.same_as(statements):
                    log.warning("migration_changed_after_apply", version=migration.version)
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    f"insert into {HISTORY} (version, name, statements)"  # noqa: S608
                    " values ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    [migration.sql],
                )
            log.info("migration_applied", version=migration.version, name=migration.name)
            applied.append(migration.version)
    return applied


async def _adopt_legacy_history(conn: asyncpg.Connection, migrations: list[Migration]) -> None:
    """Move the rows of the history kept before the CLI's table was ours too, then drop it.

    A row's statements are the local file's when its checksum still matches (the
    file is what ran), otherwise unknown (NULL), as the CLI leaves them after a repair.
    """
    if await conn.fetchval("select to_regclass($1)", LEGACY_HISTORY) is None:
        return
    rows = await conn.fetch(f"select version, name, checksum from {LEGACY_HISTORY}")  # noqa: S608
    files = {m.version: m for m in migrations}
    for row in rows:
        file = files.get(row["version"])
        statements = [file.sql] if file is not None and file.checksum == row["checksum"] else None
        await conn.execute(
            f"insert into {HISTORY} (version, name, statements) values ($1, $2, $3)"  # noqa: S608
            " on conflict (version) do nothing",
            row["version"],
            row["name"],
            statements,
        )
    await conn.execute(f"drop table {LEGACY_HISTORY}")
    log.info("migration_history_adopted", versions=[row["version"] for row in rows])
