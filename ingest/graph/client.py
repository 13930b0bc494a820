"""A Graph API client for one Instagram account: its token, its rate limit, its backoff.

Every call waits for the account's `RateLimiter` (2 calls/s), reads Meta's usage
headers (slowing down near a limit, holding for `estimated_time_to_regain_access`),
and classifies errors with `contracts.graph`:
- the token refused (190, 102): `TokenRejected`; the account stops until the token is
  replaced (a restart, or the next `ingestctl reconcile`), and says so;
- a rate limit (4, 17, 32, 613, 80001-80009, HTTP 429): wait as Meta says (or back off
  exponentially) and call again, or `Throttled` when that wait is longer than
  `max_wait_seconds`: the caller stops the account and records when to come back;
- anything else: the `GraphApiError` itself, for the caller to decide (retry smaller,
  skip the message, skip the object).
The token travels as `Authorization: Bearer`, never in a URL (an `access_token` Meta put
into a `paging.next` is taken out); no URL is ever logged or put into an error.
`on_rejected` tells the account registry of a refused token (`needs_reauth`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog

from contracts.graph import GraphApiError, graph_error
from ingest.config.accounts import GraphAccount
from ingest.graph.rate_limit import Clock, RateLimiter
from ingest.graph.usage import read_usage

log = structlog.get_logger(__name__)
# httpx logs every request's URL at INFO, and a Graph URL holds the token: whatever logging
# a host application configures, those lines stay below what is shown.
logging.getLogger("httpx").setLevel(logging.WARNING)

GRAPH_HOSTS = frozenset({"graph.instagram.com", "graph.facebook.com"})
_NOT_SEGMENTS = frozenset({"", ".", ".."})  # httpx resolves dots: `v21.0/..` is `/`


def object_path(object_id: str) -> str | None:
    """A Graph object id as one path segment (quoted: `/`, `?` and `#` stay in it), or
    None when it cannot be one: quoting leaves `.` and `..` as they are."""
    return None if object_id in _NOT_SEGMENTS else quote(object_id, safe="")


JsonObject = dict[str, Any]
Rejected = Callable[[str | None, int | None], Awaitable[None]]


class GraphAccountError(Exception):
    """This account cannot be read now; the message says why (never the token)."""


class TokenRejected(GraphAccountError):
    def __init__(self, error: GraphApiError) -> None:
        super().__init__(f"token rejected ({error.code}): replace it, then restart or rerun")
        self.error = error


class Throttled(GraphAccountError):
    def __init__(self, seconds: float, error: GraphApiError | None = None) -> None:
        super().__init__(f"rate limited: Meta asks to wait {seconds:.0f} s")
        self.seconds = seconds
        self.error = error


class AccountUnresolved(GraphAccountError):
    """`/me` did not say which account the token belongs to: set INSTAGRAM_ACCOUNT_ID."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    max_wait_seconds: float = 300.0  # longer waits stop the account for this run
    backoff_seconds: float = 60.0  # a rate limit without Meta's estimate: 60 s, 120 s, …
    rate_limit_retries: int = 3
    calls_per_second: int = 2


class GraphClient:
    def __init__(
        self,
        account: GraphAccount,
        http: httpx.AsyncClient,
        base_url: str,
        clock: Clock,
        config: ClientConfig | None = None,
    ) -> None:
        self.account = account
        self._http = http
        self._base = base_url.rstrip("/")
        self._clock = clock
        self._config = config or ClientConfig()
        self.limiter = RateLimiter(clock, calls=self._config.calls_per_second)
        self._hosts = GRAPH_HOSTS | {urlsplit(self._base).netloc}
        self._scheme = urlsplit(self._base).scheme  # https, but for a test's double
        self._account_id = account.account_id
        self.stopped: str | None = None  # why this account is stopped (a token error)
        self.on_rejected: Rejected | None = None

    @property
    def account_id(self) -> str | None:
        return self._account_id

    async def resolve_account_id(self) -> str:
        """The account's id: configured, or asked once from `/me?fields=user_id`."""
        if self._account_id is None:
            try:
                me = await self.get("me", {"fields": "user_id,username"})
            except GraphApiError as exc:
                message = f"GET /me failed ({exc.label}): set INSTAGRAM_ACCOUNT_ID"
                raise AccountUnresolved(message) from None
            user_id = me.get("user_id")
            if not isinstance(user_id, str | int) or not str(user_id).isdigit():
                raise AccountUnresolved("GET /me gave no user_id: set INSTAGRAM_ACCOUNT_ID")
            self._account_id = str(user_id)
        return self._account_id

    async def get(self, path: str, params: dict[str, str]) -> JsonObject:
        """`GET {GRAPH_API_URL}/{path}?…&access_token=…`; a path that would leave the
        API's version (a `.` or `..` segment) is refused, never sent."""
        if any(part in _NOT_SEGMENTS for part in path.split("/")):
            raise GraphApiError(0, message="a path outside the API version")
        url = httpx.URL(f"{self._base}/{path}").copy_merge_params(params)
        return await self._call(url)

    async def follow(self, next_url: str, *, limit: int | None = None) -> JsonObject:
        """A `paging.next` URL as Meta gave it (its cursor, fields, token); only `limit` is
        replaced when retrying smaller. A URL off Meta's Graph hosts, or with another
        scheme than `GRAPH_API_URL`'s (`http:` would carry the token in clear), is
        refused, so the token never goes anywhere else."""
        try:
            url = httpx.URL(next_url)
        except (httpx.InvalidURL, ValueError, TypeError):  # a control character, say
            raise GraphApiError(0, message="paging.next is not a URL") from None
        if url.scheme != self._scheme or url.netloc.decode() not in self._hosts:
            raise GraphApiError(0, message="paging.next points outside the Graph API")
        if limit is not None:
            url = url.copy_set_param("limit", str(limit))
        return await self._call(url)

    async def _call(self, url: httpx.URL) -> JsonObject:
        if "access_token" in url.params:
            url = url.copy_remove_param("access_token")
        for attempt in range(self._config.rate_limit_retries + 1):
            held = self.limiter.held_for()
            if held > self._config.max_wait_seconds:
                raise Throttled(held)
            await self.limiter.acquire()
            body, error, regain = await self._send(url)
            if error is None:
                return body
            if error.token_invalid:
                self.stopped = str(TokenRejected(error))
                log.error("graph_token_rejected", account=self.account.name, code=error.code)
                if self.on_rejected is not None:
                    await self.on_rejected(self._account_id, error.code)
                raise TokenRejected(error)
            if not error.rate_limited:
                raise error
            wait = regain or self._config.backoff_seconds * 2**attempt
            log.warning("graph_rate_limited", account=self.account.name, code=error.code, wait=wait)
            self.limiter.hold(wait)
            if wait > self._config.max_wait_seconds:
                raise Throttled(wait, error)
        raise Throttled(self.limiter.held_for(), error)

    async def _send(self, url: httpx.URL) -> tuple[JsonObject, GraphApiError | None, float]:
        """One request: the body, or the error, and Meta's estimate of the wait (seconds)."""
        try:
            bearer = {"Authorization": f"Bearer {self.account.token.reveal()}"}
            response = await self._http.get(url, headers=bearer)
        except httpx.HTTPError as exc:  # the URL holds the token: only the type is kept
            return {}, GraphApiError(0, transient=True, message=type(exc).__name__), 0.0
        except httpx.InvalidURL:  # not temporary: the same URL would fail again
            return {}, GraphApiError(0, message="InvalidURL"), 0.0
        usage = read_usage(response.headers)
        if usage.pause_seconds:
            self.limiter.hold(usage.pause_seconds)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict) and "error" not in body:
            return body, None, 0.0
        error = graph_error(response.status_code, body)
        if response.is_success:  # 2xx without an object: not an answer we can use
            error = GraphApiError(0, message="an answer that is not a JSON object")
        return {}, error, usage.regain_seconds


class GraphClients:
    """One client per account, built once (app factory, CLI) and shared, so reconcile runs
    and missing-message fetches share each account's rate limit. With `source` (the
    account registry's usable accounts), the set follows it: a new account gets a client,
    a new token replaces a stopped client's, an account no longer usable is dropped."""

    def __init__(
        self,
        accounts: tuple[GraphAccount, ...],
        http: httpx.AsyncClient,
        base_url: str,
        clock: Clock,
        config: ClientConfig | None = None,
        *,
        source: Callable[[], tuple[GraphAccount, ...]] | None = None,
        on_rejected: Rejected | None = None,
    ) -> None:
        self._args = (http, base_url, clock, config)
        self._source = source
        self._on_rejected = on_rejected
        self._clients = [self._made(a) for a in accounts]

    def _made(self, account: GraphAccount) -> GraphClient:
        client = GraphClient(account, *self._args)
        client.on_rejected = self._on_rejected
        return client

    @property
    def clients(self) -> list[GraphClient]:
        if self._source is not None:
            self._follow(self._source())
        return self._clients

    def _follow(self, accounts: tuple[GraphAccount, ...]) -> None:
        known = {(c.account.account_id, c.account.token.reveal()): c for c in self._clients}
        self._clients = [
            known.get((a.account_id, a.token.reveal())) or self._made(a) for a in accounts
        ]

    def __bool__(self) -> bool:
        return bool(self.clients)

    def for_account(self, account_id: str) -> GraphClient | None:
        """The client for `account_id`; the one token's client while its id is unknown."""
        clients = self.clients
        for client in clients:
            if client.account_id == account_id:
                return client
        unknown = [c for c in clients if c.account_id is None]
        return unknown[0] if len(clients) == 1 and unknown else None
