"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

The embedded server starts once (about a second). Migrations are applied once to
a template database; each test gets its own copy (`CREATE DATABASE … TEMPLATE`),
so tests never see each other's rows and need no clean-up. A copy is some 400 files:
the server keeps its data in memory (`/dev/shm`, when there is one with room), where that
takes 15 ms rather than the 0.2–0.4 s this machine's disk takes, and does not `fsync` (nor
write full pages). Both only matter when the machine itself crashes, which no test does: a
PostgreSQL killed or stopped by a test still keeps every commit (its WAL is written at
commit as ever). Every database is
set up the way a Supabase project is (its roles and default privileges, see
`supabase_roles.sql`) before the migrations run, so the migrations meet what they
meet on Supabase.

A Supabase project (real PostgREST behind a `/rest/v1` gateway, migrated by the
Supabase CLI) starts once per session too, on first use (`supabase_stack`);
`supabase` hands it to a test emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from starlette.applications import Starlette

if TYPE_CHECKING:
    from tests.supabase_stack import SupabaseStack

from ingest.config.env import settings_from_env
from ingest.config.settings import Settings
from storage.embedded import EmbeddedPostgres, running
from storage.migrations import apply_migrations
from storage.postgres import PostgresBackend
from tests.supabase_cli import prepare_roles

TEMPLATE = "ingest_template"
_counter = itertools.count()

# Known test secrets; never used outside tests.
META_SECRET = "test-meta-app-secret"
META_SECRET_2 = "test-meta-app-secret-rotated"
VERIFY_TOKEN = "test-verify-token"
INTERNAL_TOKEN = "test-internal-token"
QSTASH_CURRENT_KEY = "sig_test_current_key_0123456789"
QSTASH_NEXT_KEY = "sig_test_next_key_9876543210"
PUBLIC_BASE_URL = "https://ingest.example.test"
AUTH_INTERNAL = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}

BASE_ENV: dict[str, str] = {
    "APP_ENV": "test",
    "META_APP_SECRETS": f"{META_SECRET},{META_SECRET_2}",
    "META_VERIFY_TOKEN": VERIFY_TOKEN,
    "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
    "QSTASH_CURRENT_SIGNING_KEY": QSTASH_CURRENT_KEY,
    "QSTASH_NEXT_SIGNING_KEY": QSTASH_NEXT_KEY,
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
}


IN_MEMORY = Path("/dev/shm")
IN_MEMORY_PREFIX = "ingest-tests-pg-"


def _pg_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's server keeps its data: a directory of its own in memory when the
    machine has room there (2 GiB free), else pytest's temporary directory. Directories left
    in memory by a session that was killed (its process gone, its server stopped) are removed
    first; the name carries the session's pid."""
    try:
        room = shutil.disk_usage(IN_MEMORY).free >= 2 * 2**30 and os.access(IN_MEMORY, os.W_OK)
    except OSError:
        room = False
    if not room:
        return tmp_path_factory.mktemp("pg")
    for left in IN_MEMORY.glob(IN_MEMORY_PREFIX + "*"):
        owner = left.name.removeprefix(IN_MEMORY_PREFIX).split("-")[0]
        if owner.isdigit() and not _alive(int(owner)) and not running(left / "data"):
            shutil.rmtree(left, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{IN_MEMORY_PREFIX}{os.getpid()}-", dir=IN_MEMORY))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    home = _pg_home(tmp_path_factory)
    server = EmbeddedPostgres(home / "data", delete_on_exit=True)
    try:
        server.configure(fsync="off", full_page_writes="off")  # see the module's docstring
        server.create_database(TEMPLATE)
        asyncio.run(prepare_roles(server.url(TEMPLATE)))
        asyncio.run(apply_migrations(server.url(TEMPLATE)))
        yield server
    finally:
        server.cleanup()
        with contextlib.suppress(OSError):
            home.rmdir()  # empty now, or pytest's own to keep


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name, template=TEMPLATE)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def supabase_stack(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SupabaseStack]:
    """PostgREST + gateway on a database migrated by `supabase db push`, once per session."""
    from tests.supabase_stack import running_stack

    with running_stack(pg_server, tmp_path_factory.mktemp("supabase")) as stack:
        yield stack


@pytest.fixture
async def supabase(supabase_stack: SupabaseStack) -> SupabaseStack:
    """The session's Supabase project with every table as the migrations left it."""
    await supabase_stack.reset()
    return supabase_stack


@pytest.fixture
async def backend(database_url: str) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(database_url)
    await backend.open()
    yield backend
    await backend.close()


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings as a test wants them: `make_settings(QSTASH_TOKEN="x")` overrides variables."""

    def make(**overrides: str | None) -> Settings:
        env = {**BASE_ENV, "DATABASE_URL": database_url}
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return settings_from_env(env, env_file=None)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


async def open_client(app: Starlette, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client bound to `app`, with its lifespan running around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", **kwargs
        ) as client:
            yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from ingest.app import create_app

    async for c in open_client(create_app(settings)):
        yield c


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def qstash_server() -> Iterator[tuple[Any, str]]:
    """The QStash double as a real HTTP server, once per session."""
    from tests.doubles.qstash import QStashDouble, serve

    double = QStashDouble()
    with serve(double.app) as url:
        yield double, url


@pytest.fixture
def qstash(qstash_server: tuple[Any, str]) -> Any:
    """The double, emptied for this test."""
    double, _ = qstash_server
    double.reset()
    return double


@pytest.fixture
def qstash_settings(
    make_settings: Callable[..., Settings], qstash_server: tuple[Any, str], qstash: Any
) -> Callable[..., Settings]:
    """Settings that publish to the QStash double."""
    from tests.doubles.qstash import TOKEN

    _, url = qstash_server

    def make(**overrides: str | None) -> Settings:
        return make_settings(QSTASH_TOKEN=TOKEN, QSTASH_URL=url, **overrides)

    return make


@pytest.fixture(scope="session")
def graph_server() -> Iterator[tuple[Any, str]]:
    """The Graph API double as a real HTTP server, once per session; its base URL is
    what `GRAPH_API_URL` takes (`<url>/v21.0`)."""
    from tests.doubles.graph_api import GraphApiDouble
    from tests.doubles.qstash import serve

    double = GraphApiDouble()
    with serve(double.app) as url:
        yield double, f"{url}/v21.0"


@pytest.fixture
def graph_online(graph_server: tuple[Any, str]) -> Any:
    """The served Graph double, emptied for this test."""
    double, _ = graph_server
    double.reset()
    return double


async def wait_settled(database: Any, *, within: float = 10.0) -> dict[str, int]:
    """Wait until the relay has settled every admitted event (none left pending);
    return the ledger's counts by state. Fails the test if the relay never gets there.
    `database`: the test's `PostgresBackend`, or anything with an async `fetch(sql)`."""
    fetch = database.pool.fetch if isinstance(database, PostgresBackend) else database.fetch
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        rows = await fetch("select state, count(*) n from ingest_ledger group by 1")
        states = {r["state"]: r["n"] for r in rows}
        if not states.get("pending"):
            return states
        if loop.time() > deadline:
            raise AssertionError(f"the relay left events pending for {within} s: {states}")
        await asyncio.sleep(0.02)


async def forward_to_consumer(client: httpx.AsyncClient, qstash: Any) -> list[int]:
    """Play QStash: deliver every message the double accepted to the consumer, signed."""
    from tests.doubles.qstash_signer import delivery_headers

    statuses = []
    for message in qstash.messages:
        path = message.destination.removeprefix(PUBLIC_BASE_URL)
        headers = delivery_headers(message.body, message.destination, QSTASH_CURRENT_KEY)
        response = await client.post(path, content=message.body, headers=headers)
        statuses.append(response.status_code)
    return statuses
