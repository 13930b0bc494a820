"""What this process knows of every account's token, and who may be called.

Connected accounts' tokens come from `ig_accounts` (decrypted here, kept in memory as
`Secret`s); environment accounts' from the settings (`INSTAGRAM_ACCESS_TOKEN`,
`INSTAGRAM_ACCESS_TOKENS`), recorded in `ig_accounts` by a digest so a changed token
counts as a reconnect and the same one revives nothing. A connected token wins over an
environment one. An account `needs_reauth` or `deauthorized` gets no credential at all:
its Graph work stops, its webhooks are still stored. `rejected` (a code 190 anywhere)
marks an account so, here at once and in the database for every instance; `load` picks
up what other instances changed (connects, refreshes, rejections).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from contracts.graph import GraphApiError
from ingest.accounts.cipher import TokenCipher, TokenUnreadable
from ingest.accounts.meta import MetaAuth
from ingest.accounts.registry import ENVIRONMENT, FACEBOOK_PAGE, INSTAGRAM_LOGIN, Registry
from ingest.config.accounts import GraphAccount
from ingest.config.secret import Secret
from storage import StorageError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Credential:
    """One account's token and where its Graph calls go (never printed: `Secret`)."""

    account_id: str | None  # None: the one environment token whose account is not known
    token: Secret
    source: str
    graph_url: str
    page_id: str | None = None

    def as_graph_account(self) -> GraphAccount:
        return GraphAccount(self.account_id, self.token, self.page_id)


class TokenBook:
    def __init__(
        self,
        registry: Registry,
        cipher: TokenCipher | None,
        environment: tuple[GraphAccount, ...],
        *,
        graph_api_url: str,
        facebook_graph_url: str,
        meta: MetaAuth | None = None,
    ) -> None:
        self._registry = registry
        self._cipher = cipher
        self._graph = graph_api_url
        self._facebook = facebook_graph_url
        self._meta = meta
        self._env = {
            a.account_id: Credential(a.account_id, a.token, ENVIRONMENT, graph_api_url, a.page_id)
            for a in environment
            if a.account_id is not None
        }
        unknown = [a for a in environment if a.account_id is None]
        self._anyone: Credential | None = (
            Credential(None, unknown[0].token, ENVIRONMENT, graph_api_url) if unknown else None
        )
        self._connected: dict[str, Credential] = {}
        self._unusable: set[str] = set()
        # No key and no environment token: no token to know of, nothing to read or reload.
        self.idle = cipher is None and not environment

    # --- reading ------------------------------------------------------------------------

    def credential(self, account_id: str) -> Credential | None:
        """The token to call the Graph API with for `account_id`, or None: no usable token."""
        if account_id in self._unusable:
            return None
        found = self._connected.get(account_id) or self._env.get(account_id)
        if found is not None:
            return found
        if self._anyone is not None and not self._connected and not self._env:
            return self._anyone  # one token, its account unknown: as before, for everyone
        return None

    def bearer_for(self, account_id: str) -> tuple[str, str] | None:
        """(token, Graph base URL) for profile enrichment; None: make no call."""
        found = self.credential(account_id)
        return (found.token.reveal(), found.graph_url) if found is not None else None

    def graph_accounts(self) -> tuple[GraphAccount, ...]:
        """Every account with a usable token (reconcile's accounts)."""
        ids = sorted({*self._connected, *self._env} - self._unusable)
        usable = [c.as_graph_account() for i in ids if (c := self.credential(i)) is not None]
        if not ids and self._anyone is not None:
            usable.append(self._anyone.as_graph_account())
        return tuple(usable)

    # --- changing -----------------------------------------------------------------------

    async def start(self) -> None:
        """Record the environment's accounts whose id is known, then load what the
        database holds (no call to Meta: start-up never waits on it)."""
        if self.idle:
            return
        for credential in list(self._env.values()):
            if not await self._record(credential):
                return
        await self.load()

    async def resolve(self) -> None:
        """Ask `/me` which account the one environment token without an id belongs to
        (until then it serves every account, as before), and record it."""
        if self._anyone is None or self._meta is None:
            return
        try:
            me = await self._meta.me(self._anyone.token.reveal())
        except GraphApiError as exc:
            log.warning("environment_account_unknown", code=exc.code)
            return
        found = Credential(me.account_id, self._anyone.token, ENVIRONMENT, self._graph)
        self._env[me.account_id] = found
        self._anyone = None
        if await self._record(found):
            await self.load()

    async def _record(self, credential: Credential) -> bool:
        assert credential.account_id is not None
        try:
            state = await self._registry.environment(
                credential.account_id, credential.page_id, credential.token.reveal()
            )
        except StorageError as exc:
            log.warning("account_not_recorded", error=type(exc).__name__)
            return False
        if state != "active":
            log.warning("environment_account_unusable", account=credential.account_id,
                        state=state)  # fmt: skip
        return True

    async def load(self) -> None:
        """Read every account's token and state from the database (a failure keeps what
        is known)."""
        try:
            rows = await self._registry.tokens()
        except StorageError as exc:
            log.warning("accounts_not_loaded", error=type(exc).__name__)
            return
        connected: dict[str, Credential] = {}
        unusable: set[str] = set()
        for row in rows:
            account = str(row["account_id"])
            if not row["usable"]:
                unusable.add(account)
                continue
            if row["ciphertext"] is None or self._cipher is None:
                continue
            try:
                token = self._cipher.decrypt(row["ciphertext"], account)
            except TokenUnreadable as exc:
                log.error("account_token_unreadable", account=account, detail=str(exc))
                continue
            page = row["page_id"] if row["source"] == FACEBOOK_PAGE else None
            url = self._facebook if row["source"] == FACEBOOK_PAGE else self._graph
            connected[account] = Credential(account, Secret(token), row["source"], url, page)
        self._connected, self._unusable = connected, unusable

    async def rejected(self, account_id: str | None, code: int | None) -> None:
        """A code 190 (or 102): the account needs re-authorisation; no more calls for it."""
        if account_id is None:
            self._anyone = None
            return
        self._unusable.add(account_id)
        log.error("account_needs_reauth", account=account_id, code=code)
        try:
            await self._registry.graph_error(account_id, code, reauth=True)
        except StorageError as exc:
            log.warning("account_state_not_recorded", error=type(exc).__name__)

    def refreshed(self, account_id: str, token: str) -> None:
        """An Instagram-Login token this process just refreshed: used from now on."""
        self._connected[account_id] = Credential(
            account_id, Secret(token), INSTAGRAM_LOGIN, self._graph
        )

    async def run(self, every_seconds: float = 30.0) -> None:
        """Resolve the unknown environment account, then reload every `every_seconds`
        until cancelled: other instances' changes."""
        if self.idle:
            return
        await self.resolve()
        while True:
            await asyncio.sleep(every_seconds)
            await self.load()
