"""The Supabase backend: our SQL functions through supabase-py's `rpc` (PostgREST).

`POST /rest/v1/rpc/<function>` with the named arguments as a JSON object, the
service-role key as `apikey` and bearer token (the server side bypasses row-level
security; never ship this key to a browser). supabase-py is given our tuned httpx
client, and arguments without U+0000 (`storage.jsonb`). PostgREST failures are
mapped onto the same two storage errors as asyncpg's: a SQLSTATE goes through the
shared classifier; PostgREST's own codes, the gateway's answers without a code (a
refused API key) and bare HTTP statuses (a gateway's 502, a 429) are classified here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from postgrest.exceptions import APIError

from storage import jsonb
from storage.errors import (
    DataRejected,
    StorageError,
    StorageUnavailable,
    from_sqlstate,
    unreachable,
)

if TYPE_CHECKING:
    from supabase import AsyncClient

_RETRYABLE_STATUSES = frozenset({408, 429})
# PGRST0xx: PostgREST cannot reach the database (connection, pool timeout) → retry.
# PGRST1xx: the request itself is malformed → permanent.
# PGRST2xx/3xx: schema cache (function not found during a deploy) or JWT/config → retry:
# the data is not at fault, and an operator fix lets QStash's retries succeed.
_PERMANENT_PGRST_PREFIX = "PGRST1"


def translate(exc: APIError) -> StorageError:
    code = exc.code or ""
    message = f"PostgREST {code}: {exc.message}"
    if code.isdigit() and len(code) == 3:  # a bare HTTP status (non-PostgREST body)
        status = int(code)
        if status >= 500 or status in _RETRYABLE_STATUSES:
            return StorageUnavailable(message)
        return DataRejected(message)
    if code.startswith("PGRST"):
        if code.startswith(_PERMANENT_PGRST_PREFIX):
            return DataRejected(message)
        return StorageUnavailable(message)
    if len(code) == 5:  # a SQLSTATE from the database: its own words, as over asyncpg
        return from_sqlstate(exc.message or message, code)
    return StorageUnavailable(message)


class SupabaseBackend:
    """Implements `storage.backend.Backend` over PostgREST."""

    _client: AsyncClient

    def __init__(
        self, url: str, service_role_key: str, http: httpx.AsyncClient | None = None
    ) -> None:
        self._url = url
        self._key = service_role_key
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=10.0)

    async def open(self) -> None:
        # supabase-py is imported when a client is opened, not with this module: it costs
        # 0.2 s, which every ingestctl command and every process on PostgreSQL paid for nothing
        from supabase import AsyncClientOptions, acreate_client

        self._client = await acreate_client(
            self._url, self._key, options=AsyncClientOptions(httpx_client=self._http)
        )

    async def call(self, function: str, args: Mapping[str, Any]) -> Any:
        try:
            params = jsonb.without_nul({name: jsonb.plain(v) for name, v in args.items()})
            response = await self._client.rpc(function, params).execute()
        except APIError as exc:
            raise translate(exc) from exc
        except httpx.HTTPError as exc:
            raise StorageUnavailable(unreachable(exc)) from exc
        return response.data

    async def ping(self) -> None:
        await self.call("ingest_status", {})

    async def close(self) -> None:
        """Close the httpx client only if it is ours (the app closes the one it handed in)."""
        if self._owns_http:
            await self._http.aclose()
