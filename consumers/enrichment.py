"""Profile enrichment from the Graph API: useful, never required.

A message is stored first; enrichment runs afterwards as a background task, so it
adds nothing to Meta's or QStash's wait and can never fail the message. Each
profile is fetched at most once per interval (a claim in the database, so every
instance agrees). Errors follow the Graph API's codes (`contracts/graph.py`):
transient ones release the claim (a later event retries); rate limits pause all calls
for a while; code 190 or 102 (token invalid or expired) stops calls until the token is
replaced (a restart); other permanent errors are recorded and wait the full interval.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from contracts import Event, EventKind
from contracts.graph import GraphApiError, graph_error
from storage import Backend, StorageError

FIELDS = (
    "name,username,profile_pic,follower_count,"
    "is_user_follow_business,is_business_follow_user,is_verified_user"
)

log = structlog.get_logger(__name__)


class Credentials(Protocol):
    """Whose token to call the Graph API with, per account."""

    def bearer_for(self, account_id: str) -> tuple[str, str] | None:
        """(token, Graph API base URL) for `account_id`; None: make no call for it."""
        ...

    async def rejected(self, account_id: str | None, code: int | None) -> None:
        """The token was refused (190, 102): give no more calls with it."""
        ...


class OneToken:
    """One token for every account (a caller that has nothing else); dead once refused."""

    def __init__(self, token: str, graph_url: str) -> None:
        self._token = token
        self._graph_url = graph_url
        self.dead = False

    def bearer_for(self, account_id: str) -> tuple[str, str] | None:
        return None if self.dead else (self._token, self._graph_url)

    async def rejected(self, account_id: str | None, code: int | None) -> None:
        self.dead = True


def _retry_now(exc: BaseException) -> bool:
    """Within one enrichment: retry transport errors and transient 5xx, not rate limits."""
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, GraphApiError) and exc.retryable and not exc.rate_limited


class ProfileEnricher:
    def __init__(
        self,
        backend: Backend,
        http: httpx.AsyncClient,
        credentials: Credentials | None = None,
        *,
        token: str | None = None,
        graph_url: str = "",
        interval_seconds: int = 86_400,
        timeout_seconds: float = 5.0,
        pause_seconds: float = 300.0,
    ) -> None:
        self._backend = backend
        self._http = http
        if credentials is None:
            assert token is not None, "ProfileEnricher needs credentials or a token"
            credentials = OneToken(token, graph_url)
        self.credentials = credentials
        self._interval = interval_seconds
        self._timeout = timeout_seconds
        self._pause = pause_seconds
        self._paused_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def schedule(self, event: Event) -> None:
        """The processor's after-store hook: start enrichment, do not wait for it."""
        igsid = _user_of(event)
        if igsid is None or time.monotonic() < self._paused_until:
            return
        if self.credentials.bearer_for(event.account_id) is None:
            return  # no usable token for this account: the message is stored, that is all
        task = asyncio.create_task(self.enrich(igsid, event.account_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for enrichments under way (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def enrich(self, igsid: str, account_id: str) -> None:
        bearer = self.credentials.bearer_for(account_id)
        if bearer is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                claim = await self._backend.call(
                    "ig_claim_profile_enrichment",
                    {"p_igsid": igsid, "p_interval_seconds": self._interval},
                )
                if not claim["claimed"]:
                    return
                try:
                    profile = await self._fetch(igsid, *bearer)
                except (GraphApiError, httpx.HTTPError, TimeoutError) as exc:
                    await self._record_failure(igsid, account_id, exc)
                    return
                await self._store(igsid, profile, None, retry=False)
        except (StorageError, TimeoutError) as exc:
            log.warning("enrichment_skipped", error=type(exc).__name__)

    async def _fetch(self, igsid: str, token: str, graph_url: str) -> dict[str, Any]:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retry_now),
            wait=wait_exponential(multiplier=0.2, max=1.0),
            stop=stop_after_attempt(3),
            reraise=True,
        ):
            with attempt:
                response = await self._http.get(
                    f"{graph_url.rstrip('/')}/{igsid}",
                    params={"fields": FIELDS},
                    headers={"Authorization": f"Bearer {token}"},
                )
                if response.is_success:
                    data: dict[str, Any] = response.json()
                    return data
                raise _graph_error(response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _record_failure(self, igsid: str, account_id: str, exc: BaseException) -> None:
        error = exc if isinstance(exc, GraphApiError) else GraphApiError(status=0, transient=True)
        if error.token_invalid:
            log.error("graph_token_invalid", account=account_id, detail="calls stopped")
            await self.credentials.rejected(account_id, error.code)
        elif error.rate_limited:
            self._paused_until = time.monotonic() + self._pause
            log.warning("graph_rate_limited", pause_seconds=self._pause, code=error.code)
        retry = error.retryable or error.token_invalid
        await self._store(igsid, None, f"graph error {error.status}/{error.code}", retry=retry)

    async def _store(
        self, igsid: str, profile: dict[str, Any] | None, error: str | None, *, retry: bool
    ) -> None:
        await self._backend.call(
            "ig_store_profile",
            {"p_igsid": igsid, "p_profile": profile or {}, "p_error": error, "p_retry": retry},
        )


def _graph_error(response: httpx.Response) -> GraphApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return graph_error(response.status_code, body)


def _user_of(event: Event) -> str | None:
    """The Instagram user an event is about (not the business account itself)."""
    if event.kind in (EventKind.CHANGE, EventKind.UNSUPPORTED):
        return None
    if event.sender_id and event.sender_id != event.account_id:
        return event.sender_id
    return event.recipient_id if event.recipient_id != event.account_id else None
