"""Meta's token calls: the code exchange, the long-lived exchange, refresh, `/me`, the
webhook subscription, and a Facebook Page's Instagram account.

As Meta documents them (docs/accounts.md): the code is exchanged with a form POST to
`{INSTAGRAM_OAUTH_URL}/oauth/access_token`; the long-lived exchange
(`access_token?grant_type=ig_exchange_token`) and the refresh
(`refresh_access_token?grant_type=ig_refresh_token`) are GETs at the Graph host without
its version, with the token as their documented `access_token` parameter; every other
call sends the token as `Authorization: Bearer`. No URL, token or answer text is ever
logged or put into an error: an error says its code, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from contracts.graph import GraphApiError, graph_error
from ingest.config.connect import AccountSettings
from ingest.graph.client import object_path

# What the connect asks for, and the webhook fields it subscribes the account to.
SCOPES = ("instagram_business_basic", "instagram_business_manage_messages")
WEBHOOK_FIELDS = (
    "messages,messaging_postbacks,messaging_seen,messaging_referral,message_reactions,message_edit"
)


@dataclass(frozen=True, slots=True)
class Granted:
    """A token Meta gave, and for how long (None: it does not expire)."""

    token: str
    expires_in: int | None
    user_id: str | None = None
    permissions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    account_id: str  # `user_id`: the account webhooks carry as entry.id
    username: str | None
    app_user_id: str | None  # `id`: the app-scoped id Meta's callbacks name


def graph_host(graph_api_url: str) -> str:
    """`https://graph.instagram.com/v21.0` → `https://graph.instagram.com`."""
    parts = urlsplit(graph_api_url)
    return f"{parts.scheme}://{parts.netloc}"


class MetaAuth:
    def __init__(self, http: httpx.AsyncClient, accounts: AccountSettings, graph_api_url: str):
        self._http = http
        self._settings = accounts
        self._graph = graph_api_url.rstrip("/")
        self._host = graph_host(graph_api_url)
        self._facebook = accounts.facebook_graph_url.rstrip("/")

    async def exchange_code(self, code: str) -> Granted:
        """The authorisation code for a short-lived token (an hour)."""
        s = self._settings
        form = {
            "client_id": s.app_id or "",
            "client_secret": s.app_secret.reveal() if s.app_secret else "",
            "grant_type": "authorization_code",
            "redirect_uri": s.redirect_url or "",
            "code": code,
        }
        body = await self._send("POST", f"{s.oauth_url}/oauth/access_token", data=form)
        data = body.get("data")  # Meta's current shape: {"data": [{…}]}; older: flat
        item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else body
        token, user_id = item.get("access_token"), item.get("user_id")
        if not isinstance(token, str) or not token:
            raise GraphApiError(0, message="the code exchange gave no token")
        return Granted(token, 3600, str(user_id) if user_id is not None else None,
                       _permissions(item.get("permissions")))  # fmt: skip

    async def long_lived(self, short: str) -> Granted:
        secret = self._settings.app_secret.reveal() if self._settings.app_secret else ""
        params = {"grant_type": "ig_exchange_token", "client_secret": secret,
                  "access_token": short}  # fmt: skip
        return _granted(await self._send("GET", f"{self._host}/access_token", params=params))

    async def refresh(self, token: str) -> Granted:
        params = {"grant_type": "ig_refresh_token", "access_token": token}
        url = f"{self._host}/refresh_access_token"
        return _granted(await self._send("GET", url, params=params))

    async def me(self, token: str) -> Identity:
        body = await self._send(
            "GET", f"{self._graph}/me", params={"fields": "user_id,username"}, bearer=token
        )
        user_id = body.get("user_id")
        if not isinstance(user_id, str | int) or not str(user_id).isdigit():
            raise GraphApiError(0, message="/me gave no user_id")
        app_user = body.get("id")
        return Identity(str(user_id), _text(body.get("username")),
                        str(app_user) if app_user is not None else None)  # fmt: skip

    async def subscribe(self, token: str) -> None:
        params = {"subscribed_fields": WEBHOOK_FIELDS}
        url = f"{self._graph}/me/subscribed_apps"
        await self._success(await self._send("POST", url, params=params, bearer=token))

    async def page_account(self, page_id: str, token: str) -> Identity:
        """The Instagram account a Facebook Page is linked to (`instagram_business_account`)."""
        node = object_path(page_id) or "-"
        fields = {"fields": "instagram_business_account{id,username}"}
        body = await self._send("GET", f"{self._facebook}/{node}", params=fields, bearer=token)
        linked = body.get("instagram_business_account")
        if not isinstance(linked, dict) or not str(linked.get("id", "")).isdigit():
            raise GraphApiError(0, message="the Page has no Instagram business account")
        return Identity(str(linked["id"]), _text(linked.get("username")), None)

    async def subscribe_page(self, page_id: str, token: str) -> None:
        node = object_path(page_id) or "-"
        url = f"{self._facebook}/{node}/subscribed_apps"
        params = {"subscribed_fields": WEBHOOK_FIELDS}
        await self._success(await self._send("POST", url, params=params, bearer=token))

    async def _success(self, body: dict[str, Any]) -> None:
        if body.get("success") is not True:
            raise GraphApiError(0, message="the subscription was not confirmed")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        bearer: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        try:
            response = await self._http.request(
                method, url, params=params, data=data, headers=headers
            )
        except httpx.HTTPError as exc:  # its text may quote the URL: only the type is kept
            raise GraphApiError(0, transient=True, message=type(exc).__name__) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and isinstance(body, dict) and "error" not in body:
            return body
        error = graph_error(response.status_code, body)
        if error.code is None and isinstance(body, dict):  # api.instagram.com's own shape
            code = body.get("code")
            error.code = code if isinstance(code, int) and not isinstance(code, bool) else None
        error.message = ""  # Meta's text may quote what we sent: never kept
        return _raise(error)


def _raise(error: GraphApiError) -> dict[str, Any]:
    raise error


def _granted(body: dict[str, Any]) -> Granted:
    token, expires = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not token:
        raise GraphApiError(0, message="no access_token in the answer")
    seconds = expires if isinstance(expires, int) and not isinstance(expires, bool) else None
    return Granted(token, seconds)


def _permissions(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list):
        return tuple(str(p) for p in value)
    return ()


def _text(value: Any) -> str | None:
    return value[:100] if isinstance(value, str) else None
