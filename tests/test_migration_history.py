"""One migration history for the Supabase CLI and `ingestctl migrate`, proven with the real CLI.

Whichever applied a migration, the other sees it as applied and applies nothing
again; `supabase migration list` and `ingestctl migrate --list` agree; a history
kept by the old runner (`public.ingest_schema_migrations`) is adopted, not re-run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from storage.embedded import EmbeddedPostgres
from storage.migrations import HISTORY, Migration, apply_migrations, discover
from tests.conftest import BASE_ENV
from tests.supabase_cli import cli_db_url, prepare_roles, run_supabase, workdir_for

INGESTCTL = str(Path(sys.executable).parent / "ingestctl")
ALL = [m.version for m in discover()]
_names = itertools.count()


@pytest.fixture
def fresh(pg_server: EmbeddedPostgres) -> Iterator[Callable[[], str]]:
    """Empty databases set up like a Supabase project (roles, no migration yet)."""
    created: list[str] = []

    def make() -> str:
        name = f"history_{os.getpid()}_{next(_names)}"
        url = pg_server.create_database(name)
        asyncio.run(prepare_roles(url))
        created.append(name)
        return url

    yield make
    for name in created:
        pg_server.drop_database(name)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    workdir = workdir_for(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_supabase(workdir, *args, "--output-format", "json")

    return run


def run_migrate(url: str, *args: str) -> str:
    """`ingestctl migrate <args>` as an operator runs it; its standard output."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    result = subprocess.run(
        [INGESTCTL, "migrate", *args],
        env={**clean, **BASE_ENV, "DATABASE_URL": url},
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def ingestctl(url: str, *args: str) -> Any:
    return json.loads(run_migrate(url, *args, "--json"))


def push(cli: Callable[..., Any], url: str) -> list[str]:
    """`supabase db push`; the versions it applied."""
    result = cli("db", "push", "--db-url", cli_db_url(url))
    assert result.returncode == 0, result.stderr
    return [name.partition("_")[0] for name in json.loads(result.stdout)["migrations"]]


def cli_list(cli: Callable[..., Any], url: str) -> list[tuple[str, bool, bool]]:
    """(version, has a local file, applied) as `supabase migration list` sees them."""
    result = cli("migration", "list", "--db-url", cli_db_url(url))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["migrations"]
    return [(r["local"] or r["remote"], bool(r["local"]), bool(r["remote"])) for r in rows]


def ingestctl_list(url: str) -> list[tuple[str, bool, bool]]:
    rows = ingestctl(url, "--list")["migrations"]
    return [(r["version"], r["local"], r["applied"]) for r in rows]


async def history(url: str) -> dict[str, tuple[str, list[str] | None]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(f"select version, name, statements from {HISTORY}")
        return {r["version"]: (r["name"], r["statements"]) for r in rows}
    finally:
        await conn.close()


async def columns(url: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "select c.column_name, c.udt_name, c.is_nullable, c.column_default,"
            " coalesce(k.constraint_name is not null, false) as primary_key"
            " from information_schema.columns c"
            " left join information_schema.key_column_usage k using"
            " (table_schema, table_name, column_name)"
            " where c.table_schema = 'supabase_migrations' and c.table_name = 'schema_migrations'"
            " order by c.ordinal_position"
        )
        return [tuple(r) for r in rows]
    finally:
        await conn.close()


def test_both_tools_keep_the_history_in_the_same_table_with_the_same_columns(
    fresh: Callable[[], str], cli: Callable[..., Any]
) -> None:
    pushed, migrated = fresh(), fresh()
    push(cli, pushed)
    asyncio.run(apply_migrations(migrated))
    expected = [
        ("version", "text", "NO", None, True),
        ("statements", "_text", "YES", None, False),
        ("name", "text", "YES", None, False),
    ]
    assert asyncio.run(columns(pushed)) == expected
    assert asyncio.run(columns(migrated)) == expected


def test_after_a_cli_push_ingestctl_migrate_applies_nothing(
    fresh: Callable[[], str], cli: Callable[..., Any]
) -> None:
    url = fresh()
    assert push(cli, url) == ALL
    before = asyncio.run(history(url))
    assert ingestctl(url) == {"applied": []}
    assert asyncio.run(history(url)) == before
    assert ingestctl_list(url) == cli_list(cli, url) == [(v, True, True) for v in ALL]


def test_after_ingestctl_migrate_a_cli_push_applies_nothing(
    fresh: Callable[[], str], cli: Callable[..., Any]
) -> None:
    url = fresh()
    assert ingestctl(url) == {"applied": ALL}
    before = asyncio.run(history(url))
    assert push(cli, url) == []
    assert asyncio.run(history(url)) == before
    assert ingestctl_list(url) == cli_list(cli, url) == [(v, True, True) for v in ALL]


def test_pending_versions_are_listed_alike_by_both(
    fresh: Callable[[], str], cli: Callable[..., Any], tmp_path: Path
) -> None:
    url = fresh()
    first = tmp_path / "first"
    first.mkdir()
    for path in sorted((Path(__file__).parent.parent / "supabase" / "migrations").glob("*.sql"))[
        :2
    ]:
        shutil.copy(path, first)
    asyncio.run(apply_migrations(url, first))
    expected = [(v, True, v in ALL[:2]) for v in ALL]
    assert ingestctl_list(url) == cli_list(cli, url) == expected
    human = run_migrate(url, "--list").splitlines()
    assert [line.split()[::2] for line in human[1:]] == [
        [v, "applied" if v in ALL[:2] else "pending"] for v in ALL
    ]
    assert push(cli, url) == ALL[2:]
    assert ingestctl_list(url) == [(v, True, True) for v in ALL]


def test_statements_the_cli_recorded_are_recognised_as_the_files_they_came_from(
    fresh: Callable[[], str], cli: Callable[..., Any]
) -> None:
    url = fresh()
    push(cli, url)
    recorded = asyncio.run(history(url))
    for migration in discover():
        name, statements = recorded[migration.version]
        assert name == migration.name
        assert statements is not None and len(statements) >= 1
        assert migration.same_as(statements)
        edited = Migration(migration.version, migration.name, migration.sql + "\nselect 1;")
        assert not edited.same_as(statements)


def test_a_history_kept_by_the_old_runner_is_adopted_not_reapplied(
    fresh: Callable[[], str],
) -> None:
    asyncio.run(adopt_old_history(fresh()))


async def adopt_old_history(url: str) -> None:
    old = discover()[:3]
    conn = await asyncpg.connect(url)
    try:  # what the runner before this change left behind
        await conn.execute(
            "create table public.ingest_schema_migrations (version text primary key,"
            " name text not null, checksum text not null,"
            " applied_at timestamptz not null default now())"
        )
        for migration in old:
            await conn.execute(migration.sql)
            await conn.execute(
                "insert into public.ingest_schema_migrations values ($1, $2, $3)",
                migration.version, migration.name, migration.checksum,
            )  # fmt: skip
        await conn.execute("update public.ingest_schema_migrations set checksum = 'edited'"
                           " where version = $1", old[2].version)  # fmt: skip
    finally:
        await conn.close()
    assert await apply_migrations(url) == ALL[3:]
    adopted = await history(url)
    assert adopted[old[0].version] == (old[0].name, [old[0].sql])
    assert adopted[old[2].version] == (old[2].name, None)  # the file changed since: unknown
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("select to_regclass('public.ingest_schema_migrations')") is None
    finally:
        await conn.close()
    assert await apply_migrations(url) == []
