"""What the app factory builds for accounts: the token book, the connect flow, the
refresh schedule, and the OAuth callback route.

Always a book (environment tokens work without a key, as before); a connector only with
`INSTAGRAM_APP_ID`, `TOKEN_ENCRYPTION_KEY` and a redirect URL; a refresh schedule only
with a key (only stored tokens are refreshed) and `ACCOUNT_REFRESH_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ingest.accounts.book import TokenBook
from ingest.accounts.cipher import TokenCipher
from ingest.accounts.connect import Connector, callback, utc_now
from ingest.accounts.meta import MetaAuth
from ingest.accounts.refresh import Refresher, RefreshSchedule
from ingest.accounts.registry import Registry
from ingest.config.connect import CALLBACK_PATH
from ingest.config.settings import Settings
from storage import Backend

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the address held the authorisation code
    "X-Frame-Options": "DENY",
}


def holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class AccountsService:
    def __init__(
        self,
        book: TokenBook,
        connector: Connector | None,
        refresher: Refresher | None,
        refresh_interval_seconds: int,
        *,
        meta: MetaAuth,
        cipher: TokenCipher | None,
        now: Callable[[], datetime],
    ) -> None:
        self.book = book
        self.meta = meta
        self.cipher = cipher
        self.now = now
        self.connector = connector
        self.refresher = refresher
        self._interval = refresh_interval_seconds
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def build(
        cls,
        settings: Settings,
        backend: Backend,
        http: httpx.AsyncClient,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> AccountsService:
        accounts = settings.accounts
        registry = Registry(backend)
        cipher = TokenCipher(accounts.encryption_keys) if accounts.stores_tokens else None
        meta = MetaAuth(http, accounts, settings.graph_api_url)
        book = TokenBook(
            registry, cipher, settings.graph_accounts, graph_api_url=settings.graph_api_url,
            facebook_graph_url=accounts.facebook_graph_url, meta=meta,
        )  # fmt: skip
        connector = None
        if accounts.connects and cipher is not None:
            connector = Connector(accounts, registry, cipher, meta, book, now=now)
        refresher = None
        if cipher is not None:
            refresher = Refresher(registry, cipher, meta, book, holder=holder(), now=now)
        return cls(book, connector, refresher, accounts.refresh_interval_seconds,
                   meta=meta, cipher=cipher, now=now)  # fmt: skip

    @property
    def connect_url(self) -> Callable[[], Awaitable[str]] | None:
        """A fresh authorisation URL (the console's button), or None: no connect flow."""
        return self.connector.authorization_url if self.connector is not None else None

    async def start(self) -> None:
        """Record the environment's accounts and load every token (before serving, so
        the first event already uses its account's own token), then keep them reloaded.
        Every process does this; the refresh schedule is background work
        (`refresh_schedule`, run where `ingest.background` runs its tasks)."""
        await self.book.start()
        self._tasks.append(asyncio.create_task(self.book.run(), name="accounts-reload"))

    def refresh_schedule(self) -> RefreshSchedule | None:
        """The daily-style token refresh, or None: no key (no stored token) or interval 0."""
        if self.refresher is None or not self._interval:
            return None
        return RefreshSchedule(self.refresher, self._interval)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def routes(self) -> list[BaseRoute]:
        async def oauth_callback(request: Request) -> Response:
            params = {k: v[:2048] for k, v in request.query_params.items()}
            status, sentence = await callback(self.connector, params)
            return page(status, sentence)

        return [Route(CALLBACK_PATH, oauth_callback, methods=["GET"])]


def page(status: int, sentence: str) -> HTMLResponse:
    title = "Account connected" if status == 200 else "Account not connected"
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><h1>{title}</h1><p>{html.escape(sentence)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
