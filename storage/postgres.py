"""The Postgres backend: asyncpg pool, named-argument calls to our SQL functions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import asyncpg

from storage import jsonb
from storage.errors import StorageError, StorageUnavailable, from_sqlstate, unreachable

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


async def _keep_connection(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's reset on release (a round trip per call): our calls are single
    autocommit statements that leave no session state behind to reset."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=jsonb.dumps, decoder=json.loads, schema="pg_catalog"
        )


def translate(exc: BaseException) -> StorageError:
    """Map any asyncpg/OS failure to our two storage error kinds."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        # The message alone: the DETAIL of a constraint violation quotes the row (message
        # text), and this text ends up in logs and in the ledger's `reason`. No class name:
        # operators read it (`ingestctl`, the console, the audit trail); the SQLSTATE is kept.
        message = getattr(exc, "message", None) or str(exc).split("\n", 1)[0]
        return from_sqlstate(message, getattr(exc, "sqlstate", None))
    return StorageUnavailable(unreachable(exc))


class PostgresBackend:
    """Calls `select fn(a => $1, b => $2)`; query text is stable, so asyncpg caches the plan.

    Constructed without I/O; `open()` creates the pool inside the running event loop.
    The pool starts empty (``min_size=0``) so that the service starts, and answers
    503 on /readyz, while the database is still down.
    """

    _pool: asyncpg.Pool

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
    ) -> None:
        self._dsn = dsn
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._timeout = command_timeout
        self._statements: dict[tuple[str, tuple[str, ...]], str] = {}

    async def open(self) -> None:
        pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self._max_size,
            init=_init_connection,
            reset=_keep_connection,
            timeout=self._connect_timeout,
            command_timeout=self._timeout,
        )
        assert pool is not None
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    def _statement(self, function: str, names: tuple[str, ...]) -> str:
        key = (function, names)
        statement = self._statements.get(key)
        if statement is None:
            for name in (function, *names):
                if not _IDENTIFIER.match(name):
                    raise ValueError(f"not a plain SQL identifier: {name!r}")
            params = ", ".join(f"{name} => ${i}" for i, name in enumerate(names, start=1))
            statement = f"select {function}({params})"
            self._statements[key] = statement
        return statement

    async def call(self, function: str, args: Mapping[str, Any]) -> Any:
        names = tuple(args)
        statement = self._statement(function, names)
        try:
            return await self._pool.fetchval(statement, *args.values(), timeout=self._timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise translate(exc) from exc

    async def ping(self) -> None:
        try:
            await self._pool.fetchval("select 1", timeout=2.0)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise translate(exc) from exc

    async def close(self) -> None:
        await self._pool.close()
