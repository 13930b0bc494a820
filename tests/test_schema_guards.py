"""What every migration, present and future, must leave true in schema `public`.

A database here is set up as a Supabase project is (its roles and default
privileges) before the migrations run, so these hold where they matter:
- every function has a fixed search_path (Supabase advisor lint 0011);
- `anon` and `authenticated` cannot execute any of our functions; `service_role` can;
- every table has row-level security on and no policy: nothing is readable or
  writable with the public `anon` key, through the REST API or otherwise;
- `supabase db advisors` reports no WARN (nor ERROR).
A migration that adds a function must therefore set its search_path and end with
`select public.ingest_secure_functions();` (which revokes EXECUTE from public, anon and
authenticated); these tests fail until it does.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path

import asyncpg

from storage.embedded import EmbeddedPostgres
from storage.migrations import MIGRATIONS_DIR, apply_migrations, discover
from storage.postgres import PostgresBackend
from tests.supabase_cli import cli_db_url, prepare_roles, run_supabase, workdir_for

OUR_FUNCTIONS = """
    select p.oid, p.proname, p.proconfig
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public'
      and not exists (select 1 from pg_depend d
                      where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
    order by p.proname
"""


async def test_every_function_in_public_has_a_fixed_search_path(backend: PostgresBackend) -> None:
    functions = await backend.pool.fetch(OUR_FUNCTIONS)
    assert len(functions) >= 18
    settings = {f["proname"]: f["proconfig"] for f in functions}
    assert {name: config for name, config in settings.items() if not config} == {}
    assert {name for name, config in settings.items() if 'search_path=""' not in config} == set()


async def test_only_the_service_role_may_execute_our_functions(backend: PostgresBackend) -> None:
    functions = await backend.pool.fetch(OUR_FUNCTIONS)
    may = await backend.pool.fetch(
        "select r.rolname, p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " cross join pg_roles r where n.nspname = 'public'"
        " and r.rolname in ('anon', 'authenticated', 'service_role')"
        " and has_function_privilege(r.oid, p.oid, 'execute')"
    )
    assert {row["rolname"] for row in may} == {"service_role"}
    assert sorted(row["proname"] for row in may) == sorted(f["proname"] for f in functions)


async def test_every_table_has_row_level_security_and_no_policy(backend: PostgresBackend) -> None:
    tables = await backend.pool.fetch(
        "select relname, relrowsecurity from pg_class c join pg_namespace n"
        " on n.oid = c.relnamespace where n.nspname = 'public' and c.relkind = 'r'"
    )
    assert len(tables) >= 8
    assert [t["relname"] for t in tables if not t["relrowsecurity"]] == []
    assert await backend.pool.fetchval("select count(*) from pg_policies") == 0


OUR_FUNCTIONS_AND_THEIR_USE = """
    select p.proname, p.prosrc,
           exists (select 1 from pg_depend d where d.refclassid = 'pg_proc'::regclass
                   and d.refobjid = p.oid and d.deptype = 'n') as depended_on
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public'
      and not exists (select 1 from pg_depend d
                      where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
"""
# Called by the migrations themselves, not by the service.
CALLED_BY_MIGRATIONS = {"ingest_secure_functions"}
# Read by tests only (tests/test_privacy.py); ig_accounts_overview answers the same.
READ_BY_TESTS_ONLY = {"ig_list_accounts"}


async def test_every_function_is_called_by_the_service_or_by_the_database(
    backend: PostgresBackend,
) -> None:
    """A function nothing calls is still granted to service_role and still shapes what
    the schema promises; it goes in a migration that drops it. Called means: named in
    the service's code (`ingest`, `consumers`, `storage`), named in another of our
    functions, or depended on by the database (a trigger, a default, a constraint)."""
    functions = await backend.pool.fetch(OUR_FUNCTIONS_AND_THEIR_USE)
    root = MIGRATIONS_DIR.parent.parent
    code = "\n".join(
        path.read_text() for room in ("ingest", "consumers", "storage")
        for path in sorted((root / room).rglob("*.py"))
    )  # fmt: skip
    bodies = {f["proname"]: f["prosrc"] for f in functions}

    def called(name: str) -> bool:
        named = re.compile(rf"\b{re.escape(name)}\b")
        return bool(named.search(code)) or any(
            named.search(body) for other, body in bodies.items() if other != name
        )

    unused = {f["proname"] for f in functions if not f["depended_on"] and not called(f["proname"])}
    assert unused == CALLED_BY_MIGRATIONS | READ_BY_TESTS_ONLY


def test_the_supabase_advisors_find_no_warning(database_url: str, tmp_path: Path) -> None:
    result = run_supabase(
        workdir_for(tmp_path), "db", "advisors", "--db-url", cli_db_url(database_url),
        "--level", "info", "--output-format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout).get("results") or []
    levels = {(r["level"], r["name"]) for r in found}
    assert {level for level, _ in levels} <= {"INFO"}, found
    # The INFO that remains is deliberate: RLS on with no policy (nothing for anon),
    # and indexes a fresh database has not used yet.
    assert {name for _, name in levels} <= {"rls_enabled_no_policy", "unused_index"}
    assert any(name == "rls_enabled_no_policy" for _, name in levels)


def test_the_migrations_fix_functions_they_do_not_name(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """Functions made by migrations written in parallel (ig_* / ingest_*) are covered too;
    one that set its own search_path keeps it; a function not ours is left alone."""
    url = pg_server.create_database("guards_dynamic")
    try:
        asyncio.run(_migrate_around_a_parallel_migration(url, tmp_path))
    finally:
        pg_server.drop_database("guards_dynamic")


async def _migrate_around_a_parallel_migration(url: str, tmp: Path) -> None:
    await prepare_roles(url)
    earlier = [m for m in discover() if m.version < "20261202100000"]
    for migration in earlier:
        shutil.copy(MIGRATIONS_DIR / f"{migration.version}_{migration.name}.sql", tmp)
    await apply_migrations(url, tmp)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "create function public.ingest_written_in_parallel(p_limit int) returns jsonb"
            " language sql as $$ select to_jsonb(p_limit) $$;"
            "create function public.ig_own_path() returns int language sql"
            " set search_path = pg_catalog as $$ select 1 $$;"
            "create function public.someone_elses() returns int language sql as $$ select 1 $$;"
        )
        await apply_migrations(url)
        config = {
            r["proname"]: (r["proconfig"], r["anon"], r["service"])
            for r in await conn.fetch(
                "select proname, proconfig, has_function_privilege('anon', oid, 'execute') anon,"
                " has_function_privilege('service_role', oid, 'execute') service"
                " from pg_proc where proname in"
                " ('ingest_written_in_parallel', 'ig_own_path', 'someone_elses')"
            )
        }
    finally:
        await conn.close()
    assert config == {
        "ingest_written_in_parallel": (['search_path=""'], False, True),
        "ig_own_path": (["search_path=pg_catalog"], False, True),
        "someone_elses": (None, True, True),
    }
