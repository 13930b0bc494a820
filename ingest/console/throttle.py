"""Console sign-in back-off: a few wrong tokens cost nothing, then every guess waits.

Counted per client address and for everyone at once (so many addresses cannot guess in
parallel), in the database (`ingest_console_login_*`), so every instance holds the same
back-off. While a client waits, its sign-ins are refused with `429` and `Retry-After`
after one read, not a write; the right token waits too, at most `login_max_wait_seconds`
(the cap), and signs in straight away once the wait is over. The log gets one line when a
wait starts, never one per guess.

The address is `request.client.host`: uvicorn sets it from `X-Forwarded-For` only when
the connection comes from an address in `FORWARDED_ALLOW_IPS` (its `--proxy-headers`,
on in the Procfile), so a client cannot pick its own. The database keeps a digest of it.
With the database unavailable there is nothing to count with: sign-in proceeds (the
operator must be able to sign in to see the outage) and the log says so.
"""

from __future__ import annotations

import hashlib

import structlog
from starlette.requests import Request

from ingest.config.guards import Guards
from storage import Backend, StorageError

log = structlog.get_logger(__name__)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class LoginThrottle:
    """Built once by the console; every sign-in asks `wait` first."""

    def __init__(self, backend: Backend, guards: Guards) -> None:
        self._backend = backend
        self._guards = guards

    @staticmethod
    def _key(address: str) -> str:
        return hashlib.sha256(address.encode("utf-8", "surrogatepass")).hexdigest()

    async def wait(self, address: str) -> int:
        """Seconds this address must still wait before a sign-in is looked at (0: none)."""
        try:
            result = await self._backend.call(
                "ingest_console_login_wait", {"p_client": self._key(address)}
            )
        except StorageError as exc:
            log.warning("console_login_unthrottled", error=type(exc).__name__)
            return 0
        return int(result["wait_seconds"])

    async def failed(self, address: str) -> int:
        """Count a wrong token; the wait it starts (0: none yet)."""
        try:
            result = await self._backend.call(
                "ingest_console_login_failed",
                {"p_client": self._key(address), "p_free": self._guards.login_free_failures,
                 "p_global_free": self._guards.login_global_failures,
                 "p_max_wait": self._guards.login_max_wait_seconds},
            )  # fmt: skip
        except StorageError as exc:
            log.warning("console_login_refused", client=address, counted=False,
                        error=type(exc).__name__)  # fmt: skip
            return 0
        if result["blocked"]:
            log.warning(
                "console_login_backing_off",
                client=address,
                client_failures=result["client_failures"],
                global_failures=result["global_failures"],
                wait_seconds=result["wait_seconds"],
            )
        return int(result["wait_seconds"])

    async def succeeded(self, address: str) -> None:
        try:
            await self._backend.call(
                "ingest_console_login_succeeded", {"p_client": self._key(address)}
            )
        except StorageError as exc:
            log.warning("console_login_count_kept", error=type(exc).__name__)
