"""The Graph double's token side: Instagram Login's OAuth, tokens, subscriptions, Pages.

As Meta documents them (INSTAGRAM.md, "Media and tokens"; docs/accounts.md):
- `POST /oauth/access_token` (api.instagram.com; a form: client_id, client_secret,
  grant_type=authorization_code, redirect_uri, code) → `{"data": [{"access_token",
  "user_id", "permissions"}]}`; a bad or used code → 400 `{"error_type":
  "OAuthException", "code": 400, "error_message"}`;
- `GET /access_token?grant_type=ig_exchange_token&client_secret&access_token` (the Graph
  host, no version) → `{"access_token", "token_type": "bearer", "expires_in": 5184000}`;
- `GET /refresh_access_token?grant_type=ig_refresh_token&access_token` → the same shape;
  an expired token answers code 190, `error_subcode` 0, "Session has expired …";
- `POST /v21.0/me/subscribed_apps?subscribed_fields=…` (Instagram Login) and
  `POST /v21.0/{page-id}/subscribed_apps` (a Page token) → `{"success": true}`;
- `GET /v21.0/{page-id}?fields=instagram_business_account{id,username}`: the Page's account.
Every call is recorded in the double's `calls` with the token it carried.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

APP_ID = "1234567890"
APP_SECRET = "test-meta-app-secret"  # the first of the tests' META_APP_SECRETS
LONG_LIVED_SECONDS = 5_184_000  # 60 days
BOTH = "instagram_business_basic,instagram_business_manage_messages"


@dataclass
class OAuthDouble:
    app_id: str = APP_ID
    app_secret: str = APP_SECRET
    redirect_uri: str | None = None  # checked when set
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code → (account, perms)
    short: dict[str, str] = field(default_factory=dict)  # short-lived token → account
    people: dict[str, tuple[str, str]] = field(default_factory=dict)  # account → (username, id)
    pages: dict[str, str] = field(default_factory=dict)  # page id → Instagram account
    subscribed: list[tuple[str, str]] = field(default_factory=list)  # (node, fields)
    issued: list[str] = field(default_factory=list)  # every token handed out, in order
    refresh_delay: float = 0.0  # seconds a refresh takes (two instances overlapping)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    def authorize(self, account_id: str, username: str, *, permissions: str = BOTH,
                  app_scoped_id: str | None = None) -> str:  # fmt: skip
        """The person logs in and allows: the code Meta appends to the redirect."""
        code = f"AQ-code-{account_id}-{next(self._serial)}"
        self.codes[code] = (account_id, permissions)
        self.people[account_id] = (username, app_scoped_id or f"app_scoped_{account_id}")
        return code

    def token(self, kind: str, account_id: str) -> str:
        made = f"IGAA{kind}-{account_id}-{next(self._serial)}-secretpart"
        self.issued.append(made)
        return made


def expired_answer() -> Response:
    error = {"message": "Error validating access token: Session has expired on Friday, "
             "04-Dec-26 09:00:00 PST.", "type": "OAuthException", "code": 190,
             "error_subcode": 0, "fbtrace_id": "AbCdEf"}  # fmt: skip
    return JSONResponse({"error": error}, 400)


def _oauth_error(message: str) -> Response:
    body = {"error_type": "OAuthException", "code": 400, "error_message": message}
    return JSONResponse(body, 400)


def _queued(double: Any, request: Request) -> Response | None:
    for queued in double.errors:
        if queued.when is None or queued.when in request.url.path:
            double.errors.remove(queued)
            return JSONResponse(queued.body, queued.status, headers=queued.headers)
    return None


def _record(double: Any, request: Request, token: str | None, account: str | None) -> None:
    from tests.doubles.graph_api import Call

    params = {k: v for k, v in request.query_params.items()
              if k not in ("access_token", "client_secret")}  # fmt: skip
    double.calls.append(Call(double.clock(), account, request.url.path, params, token))


def oauth_routes(double: Any) -> list[Route]:
    # `double.oauth` is read at each call: `reset` replaces it.

    async def code_exchange(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        _record(double, request, None, None)
        o: OAuthDouble = double.oauth
        if (form.get("client_id"), form.get("client_secret")) != (o.app_id, o.app_secret):
            return _oauth_error("Invalid platform app")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("Unsupported grant_type")
        if o.redirect_uri is not None and form.get("redirect_uri") != o.redirect_uri:
            return _oauth_error("Error validating verification code: redirect_uri mismatch")
        granted = o.codes.pop(str(form.get("code", "")), None)
        if granted is None:
            return _oauth_error("This authorization code has been used")
        account, permissions = granted
        short = o.token("short", account)
        o.short[short] = account
        item = {"access_token": short, "user_id": int(account), "permissions": permissions}
        return JSONResponse({"data": [item]})

    async def long_lived(request: Request) -> Response:
        o: OAuthDouble = double.oauth
        short = request.query_params.get("access_token", "")
        account = o.short.get(short)
        _record(double, request, short or None, account)
        queued = _queued(double, request)
        if queued is not None:
            return queued
        if request.query_params.get("grant_type") != "ig_exchange_token" or account is None:
            return JSONResponse({"error": {"message": "Invalid OAuth access token",
                                           "type": "OAuthException", "code": 190}}, 400)  # fmt: skip
        if request.query_params.get("client_secret") != o.app_secret:
            return JSONResponse({"error": {"message": "Error validating client secret.",
                                           "type": "OAuthException", "code": 101}}, 400)  # fmt: skip
        return _long_lived_answer(double, account)

    async def refresh(request: Request) -> Response:
        await asyncio.sleep(double.oauth.refresh_delay)
        token = request.query_params.get("access_token", "")
        owner = double.tokens.get(token)
        _record(double, request, token or None, owner[0] if owner else None)
        if token in double.expired:
            return expired_answer()
        queued = _queued(double, request)
        if queued is not None:
            return queued
        if request.query_params.get("grant_type") != "ig_refresh_token" or owner is None:
            return JSONResponse({"error": {"message": "Invalid OAuth access token",
                                           "type": "OAuthException", "code": 190,
                                           "error_subcode": 0}}, 400)  # fmt: skip
        return _long_lived_answer(double, owner[0])

    async def subscribe(request: Request) -> Response:
        owner = double._gate(request)
        if isinstance(owner, Response):
            return owner
        node = request.path_params["node"]
        if node != "me" and node != owner[1]:
            return JSONResponse({"error": {"message": "(#100) Unsupported post request",
                                           "type": "GraphMethodException", "code": 100}}, 400)  # fmt: skip
        subscriber = owner[0] if node == "me" else node
        double.oauth.subscribed.append(
            (subscriber, request.query_params.get("subscribed_fields", ""))
        )
        return JSONResponse({"success": True})

    return [
        Route("/oauth/access_token", code_exchange, methods=["POST"]),
        Route("/access_token", long_lived, methods=["GET"]),
        Route("/refresh_access_token", refresh, methods=["GET"]),
        Route("/v21.0/{node}/subscribed_apps", subscribe, methods=["POST"]),
    ]


def _long_lived_answer(double: Any, account: str) -> Response:
    made = double.oauth.token("long", account)
    double.add_account(account, made)
    body = {"access_token": made, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS}
    return JSONResponse(body)


async def page_node(double: Any, request: Request, page_id: str) -> Response:
    owner = double._gate(request)
    if isinstance(owner, Response):
        return owner
    if owner[1] != page_id:
        return JSONResponse({"error": {"message": "(#100) Object does not exist",
                                       "type": "GraphMethodException", "code": 100}}, 400)  # fmt: skip
    account = double.oauth.pages[page_id]
    username = double.oauth.people.get(account, ("page_business", ""))[0]
    linked = {"id": account, "username": username}
    return JSONResponse({"instagram_business_account": linked, "id": page_id})
