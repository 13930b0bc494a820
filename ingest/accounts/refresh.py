"""Keeping Instagram-Login tokens alive: refresh those at least 24 h old that expire
within 10 days, one instance at a time.

Each run claims the due accounts in one statement that also leases them
(`ig_account_refresh_claim`: two instances running together get disjoint sets, and a
token refreshed meanwhile is no longer due), refreshes each, stores the new token and
expiry, and frees the lease. A temporary error (network, 5xx, rate limit) only frees
the lease: the next run tries again. Code 190 marks the account `needs_reauth`. Any
other refusal (a token too young, say) is recorded by its code; the account stays
active. `now` is injected: the schedule and `ingestctl accounts refresh` use the clock,
tests a date 50 days on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

import structlog

from contracts.graph import GraphApiError
from ingest.accounts.book import TokenBook
from ingest.accounts.cipher import TokenCipher, TokenUnreadable
from ingest.accounts.meta import MetaAuth
from ingest.accounts.registry import Registry
from storage import StorageError

log = structlog.get_logger(__name__)

MIN_AGE_SECONDS = 24 * 3600  # Meta refreshes only a token at least 24 h old
WITHIN_SECONDS = 10 * 86_400  # refresh what expires within 10 days
LEASE_SECONDS = 120


@dataclass(frozen=True, slots=True)
class Refreshed:
    """One account's refresh: `outcome` is refreshed, needs_reauth, refused, retry or
    unreadable (no configured key opens its token)."""

    account_id: str
    outcome: str
    code: int | None = None
    expires_in: int | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Refresher:
    def __init__(
        self,
        registry: Registry,
        cipher: TokenCipher,
        meta: MetaAuth,
        book: TokenBook,
        *,
        holder: str,
        now: Callable[[], datetime],
    ) -> None:
        self._registry = registry
        self._cipher = cipher
        self._meta = meta
        self._book = book
        self._holder = holder
        self._now = now

    async def run(self, *, force: bool = False, account: str | None = None) -> list[Refreshed]:
        now = self._now()
        due = await self._registry.claim_refresh(
            self._holder, now, lease_seconds=LEASE_SECONDS, min_age_seconds=MIN_AGE_SECONDS,
            within_seconds=WITHIN_SECONDS, force=force, account=account,
        )  # fmt: skip
        return [await self._one(row, now) for row in due]

    async def _one(self, row: dict[str, str], now: datetime) -> Refreshed:
        account = row["account_id"]
        try:
            token = self._cipher.decrypt(row["ciphertext"], account)
        except TokenUnreadable:
            await self._registry.refreshed(account, self._holder, now)
            return self._said(Refreshed(account, "unreadable"))
        try:
            granted = await self._meta.refresh(token)
        except GraphApiError as exc:
            return self._said(await self._failed(account, exc, now))
        ciphertext = self._cipher.encrypt(granted.token, account)
        await self._registry.refreshed(
            account, self._holder, now, ciphertext, self._cipher.current, granted.expires_in
        )
        self._book.refreshed(account, granted.token)
        return self._said(Refreshed(account, "refreshed", expires_in=granted.expires_in))

    async def _failed(self, account: str, exc: GraphApiError, now: datetime) -> Refreshed:
        await self._registry.refreshed(account, self._holder, now)  # frees the lease
        if exc.token_invalid:
            await self._book.rejected(account, exc.code)
            return Refreshed(account, "needs_reauth", exc.code)
        if exc.retryable:
            return Refreshed(account, "retry", exc.code)
        await self._registry.graph_error(account, exc.code, reauth=False)
        return Refreshed(account, "refused", exc.code)

    def _said(self, result: Refreshed) -> Refreshed:
        level = "info" if result.outcome == "refreshed" else "warning"
        getattr(log, level)("account_token_refresh", account=result.account_id,
                            outcome=result.outcome, code=result.code)  # fmt: skip
        return result


class RefreshSchedule:
    """Every instance runs it; the claim lets one refresh each token."""

    def __init__(
        self, refresher: Refresher, interval_seconds: int, *, first_after: float = 15.0
    ) -> None:
        self._refresher = refresher
        self._interval = interval_seconds
        self._first_after = min(first_after, interval_seconds)
        self.passes = 0  # runs finished, whatever their outcome

    async def run(self) -> None:
        """Run after run until cancelled; a failed run is logged, the next one tries again."""
        await asyncio.sleep(self._first_after)
        while True:
            try:
                await self._refresher.run()
            except StorageError as exc:
                log.warning("account_refresh_failed", error=type(exc).__name__)
            except Exception as exc:  # its text may quote a URL: the type only
                log.error("account_refresh_crashed", error=type(exc).__name__)
            self.passes += 1
            await asyncio.sleep(self._interval)
