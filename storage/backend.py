"""The storage backend protocol: call one of our SQL functions by name.

The SQL functions in `supabase/migrations/` are the single source of truth for
every write. Both backends call them the same way, with named JSON-able
arguments, and both get JSON back, so the Postgres path and the Supabase
(PostgREST `rpc`) path cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Backend(Protocol):
    async def open(self) -> None:
        """Acquire resources inside the running event loop (called by the app lifespan)."""
        ...

    async def call(self, function: str, args: Mapping[str, Any]) -> Any:
        """Run `function(**args)` in its own transaction and return its JSON result.

        Raises `storage.errors.StorageUnavailable` or `storage.errors.DataRejected`.
        """
        ...

    async def ping(self) -> None:
        """Raise `StorageUnavailable` unless the database answers."""
        ...

    async def close(self) -> None: ...
