"""`make dblint`: `supabase db lint` and `supabase db advisors` on Debian's PostgreSQL 15.

`supabase db lint` runs plpgsql_check over every plpgsql function, and plpgsql_check
exists here only as Debian's `postgresql-15-plpgsql-check`, built for Debian's
PostgreSQL 15 server, not for the embedded (pip) server the tests use. So this starts
a second, throw-away server: initdb into a temporary directory, a Unix socket in that
directory and no TCP port at all, Supabase's roles (`supabase_roles.sql`), then

1. `supabase db push` (the CLI applies the migrations: they are valid on 15),
2. `supabase db lint --level warning --fail-on warning` (plpgsql_check: no error, no warning),
3. `supabase db advisors --level warn --fail-on warn` (Supabase's advisors: no WARN),
4. `ingestctl migrate`'s runner on a second database (our runner works on 15 too),

and removes it all. Exit status 0 only if every step passed. The Makefile installs
the Debian package when it is missing; missing binaries fail here with their names.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from storage.migrations import apply_migrations, discover
from tests.supabase_cli import (
    MissingTool,
    cli_db_url,
    prepare_roles,
    run_supabase,
    supabase_binary,
    workdir_for,
)

PG15_BIN = Path(os.environ.get("PG15_BIN", "/usr/lib/postgresql/15/bin"))
PLPGSQL_CHECK = Path("/usr/lib/postgresql/15/lib/plpgsql_check.so")
PORT = 5432  # names the socket file only: the server listens on no TCP address


class Failed(Exception):
    pass


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its commands as the `postgres` user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise Failed(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def _check_installed() -> None:
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG15_BIN / tool).exists():
            raise Failed(f"{PG15_BIN / tool} missing: install Debian's postgresql-15")
    if not PLPGSQL_CHECK.exists():
        raise Failed(f"{PLPGSQL_CHECK} missing: apt-get install postgresql-15-plpgsql-check")
    supabase_binary()


def _cli(step: str, workdir: Path, *args: str) -> None:
    result = run_supabase(workdir, *args)
    print(f"--- {step}\n{(result.stderr + result.stdout).strip()}")
    if result.returncode != 0:
        raise Failed(f"{step} failed (exit {result.returncode})")


def lint(tmp: Path) -> None:
    data, socket = tmp / "data", tmp
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(tmp, user.pw_uid, user.pw_gid)
    _run(_as_postgres([str(PG15_BIN / "initdb"), "-D", str(data), "-A", "trust",
                       "-U", "postgres", "-E", "UTF8", "--no-instructions"]))  # fmt: skip
    options = f"-p {PORT} -k {socket} -c listen_addresses=''"
    pg_ctl = str(PG15_BIN / "pg_ctl")
    _run(
        _as_postgres(
            [pg_ctl, "-D", str(data), "-o", options, "-l", str(tmp / "log"), "-w", "start"]
        )
    )
    try:
        asyncio.run(_lint_databases(socket, tmp / "cli"))
    finally:
        _run(_as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]))


async def _lint_databases(socket: Path, cli_tmp: Path) -> None:
    def url(database: str) -> str:
        return f"postgresql://postgres@/{database}?host={socket}&port={PORT}"

    await _create_database(url("postgres"), "pushed")
    await _create_database(url("postgres"), "migrated")
    workdir = workdir_for(cli_tmp)
    pushed = cli_db_url(url("pushed"))
    _cli("supabase db push", workdir, "db", "push", "--db-url", pushed)
    _cli("supabase db lint", workdir, "db", "lint", "--db-url", pushed,
         "--level", "warning", "--fail-on", "warning")  # fmt: skip
    _cli("supabase db advisors", workdir, "db", "advisors", "--db-url", pushed,
         "--level", "warn", "--fail-on", "warn")  # fmt: skip
    applied = await apply_migrations(url("migrated"))
    if applied != [m.version for m in discover()]:
        raise Failed(f"ingestctl migrate applied {applied} on PostgreSQL 15")
    print(f"--- ingestctl migrate\napplied {len(applied)} migrations")


async def _create_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    await prepare_roles(admin_url.replace("/postgres?", f"/{name}?"))


def main() -> int:
    try:
        _check_installed()
        tmp = Path(tempfile.mkdtemp(prefix="dblint-"))
        try:
            lint(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except (Failed, MissingTool) as exc:
        print(f"dblint: {exc}", file=sys.stderr)
        return 1
    print("dblint: migrations valid on PostgreSQL 15; no lint warning, no advisor WARN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
