"""A Graph API double: profiles, and the Conversations API as Meta documents it.

Answers like graph.instagram.com (Meta's Conversations API and error-handling pages):
- `GET /v21.0/{igsid}?fields=…` a profile (enrichment);
- `GET /v21.0/me?fields=user_id,username`: the token's account;
- `GET /v21.0/me/conversations?platform=instagram` (Instagram token) or
  `/v21.0/{page_id}/conversations?platform=instagram` (Page token): `{data: [{id,
  updated_time}], paging}`, newest first;
- `GET /v21.0/{conversation_id}?fields=messages.limit(n){…}`: `{messages: {data,
  paging}, id}`; its `paging.next` is `/v21.0/{conversation_id}/messages?…`, answering
  `{data, paging}`; `GET /v21.0/{message_id}?fields=…`: one message.
Cursor paging only: `paging.next` is a full URL (token, fields, limit, an opaque
`after`), absent on the last page; a page can be programmed empty but still carry
`next`. Only a conversation's 20 newest messages have details: older ones are listed
with `id` and `created_time` only, and fetching one answers 400 with code 9000001
(the issue's code; unconfirmed, so this double is where it is assumed). Errors are
`{"error": {…}}` bodies with the status Meta uses, usually 400; tests queue them, with
usage headers, for the calls they choose. Every call is recorded with the time of an
injectable clock and the account it was made for.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.doubles.graph_oauth import OAuthDouble, expired_answer, oauth_routes, page_node

TOKEN = "IGAAtest-graph-token"
BASE_URL = "http://graph.instagram.test/v21.0"
DETAILED = 20  # Meta details only the 20 newest messages of a conversation
DEFAULT_LIMIT = 25
_MESSAGES_FIELD = re.compile(r"^messages(?:\.limit\((\d+)\))?(?:\{(.*)\})?$")


@dataclass
class Message:
    mid: str
    sender: str
    recipient: str
    created: int  # epoch seconds: Graph times are whole seconds
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # attachments, shares, story, …


@dataclass
class Conversation:
    id: str
    account_id: str
    messages: list[Message]  # newest first


@dataclass
class Call:
    at: float
    account: str | None
    path: str
    params: dict[str, str]
    token: str | None = None  # the token it came with (`Authorization: Bearer` or the URL)
    bearer: bool = False  # whether that token came as `Authorization: Bearer`


@dataclass
class _Queued:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    when: str | None


@dataclass
class GraphApiDouble:
    clock: Callable[[], float] = time.monotonic
    requests: list[dict[str, str]] = field(default_factory=list)  # profile calls
    calls: list[Call] = field(default_factory=list)  # every call
    errors: list[_Queued] = field(default_factory=list)
    usage_headers: dict[str, str] = field(default_factory=dict)
    unknown_fields: set[str] = field(default_factory=set)
    details_in_listing: bool = True  # False: listings give ids only; each is fetched alone
    empty_pages: set[tuple[str, int]] = field(default_factory=set)  # (list, offset)
    tokens: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    conversations: dict[str, Conversation] = field(default_factory=dict)
    oauth: OAuthDouble = field(default_factory=OAuthDouble)
    expired: set[str] = field(default_factory=set)  # tokens answering 190 "Session has expired"

    # --- programming --------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (a session's server, between tests)."""
        for collection in (self.requests, self.calls, self.errors, self.usage_headers,
                           self.unknown_fields, self.empty_pages, self.tokens,
                           self.conversations, self.expired):  # fmt: skip
            collection.clear()
        self.details_in_listing = True
        self.oauth = OAuthDouble()

    def add_account(self, account_id: str, token: str, page_id: str | None = None) -> None:
        self.tokens[token] = (account_id, page_id)

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    def expire(self, token: str) -> None:
        """The token answers what an expired Instagram-Login token answers: code 190,
        `error_subcode` 0, "Session has expired" (INSTAGRAM.md, "Media and tokens")."""
        self.expired.add(token)

    def bearers(self, path_part: str = "") -> list[str | None]:
        """The token of every call whose path contains `path_part`, in order."""
        return [c.token for c in self.calls if path_part in c.path]

    def add_conversation(self, account_id: str, messages: list[Message]) -> Conversation:
        newest_first = sorted(messages, key=lambda m: m.created, reverse=True)
        conversation = Conversation(f"conv_{len(self.conversations) + 1}", account_id, newest_first)
        self.conversations[conversation.id] = conversation
        return conversation

    def fail_next(
        self, status: int, code: int, *, transient: bool = False, times: int = 1,
        message: str | None = None, headers: dict[str, str] | None = None,
        when: str | None = None,
    ) -> None:  # fmt: skip
        """Answer the next `times` calls whose path contains `when` (any call: None)."""
        error = {"message": message or f"programmed error {code}", "type": "OAuthException",
                 "code": code, "error_subcode": None, "is_transient": transient,
                 "fbtrace_id": "AbCdEf"}  # fmt: skip
        for _ in range(times):
            self.errors.append(_Queued(status, {"error": error}, headers or {}, when))

    def calls_for(self, account: str) -> list[Call]:
        return [c for c in self.calls if c.account == account]

    # --- the API ------------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                *oauth_routes(self),
                Route("/v21.0/me", self._me, methods=["GET"]),
                Route("/v21.0/{node}/conversations", self._conversations, methods=["GET"]),
                Route("/v21.0/{node}/messages", self._messages_edge, methods=["GET"]),
                Route("/v21.0/{node:path}", self._node, methods=["GET"]),
            ]
        )

    def _gate(self, request: Request) -> tuple[str, str | None] | Response:
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else ""
        token = bearer or request.query_params.get("access_token", "")
        owner = self.tokens.get(token)
        account = owner[0] if owner else ("profile" if token == TOKEN else None)
        params = {k: v for k, v in request.query_params.items() if k != "access_token"}
        self.calls.append(
            Call(self.clock(), account, request.url.path, params, token or None, bool(bearer))
        )
        if token in self.expired:
            return expired_answer()
        if account is None:
            return _error(400, 190, "Error validating access token")
        for queued in self.errors:
            if queued.when is None or queued.when in request.url.path:
                self.errors.remove(queued)
                return JSONResponse(queued.body, queued.status, headers=queued.headers)
        return owner or (account, None)

    def _json(self, body: dict[str, Any], status: int = 200) -> Response:
        return JSONResponse(body, status, headers=self.usage_headers)

    async def _me(self, request: Request) -> Response:
        owner = self._gate(request)
        if isinstance(owner, Response):
            return owner
        username, app_scoped = self.oauth.people.get(owner[0], ("my_business", "app_scoped_1"))
        return self._json({"user_id": owner[0], "username": username, "id": app_scoped})

    async def _conversations(self, request: Request) -> Response:
        owner = self._gate(request)
        if isinstance(owner, Response):
            return owner
        account, page = owner
        node = request.path_params["node"]
        if (node != "me" and node != page) or request.query_params.get("platform") != "instagram":
            return _error(400, 100, "(#100) Unsupported get request")
        mine = sorted(
            (c for c in self.conversations.values() if c.account_id == account),
            key=lambda c: c.messages[0].created, reverse=True,
        )  # fmt: skip
        items = [{"id": c.id, "updated_time": _iso(c.messages[0].created)} for c in mine]
        return self._json(self._page(request, f"{account}/conversations", items))

    async def _messages_edge(self, request: Request) -> Response:
        owner = self._gate(request)
        if isinstance(owner, Response):
            return owner
        conversation = self.conversations.get(request.path_params["node"])
        if conversation is None or conversation.account_id != owner[0]:
            return _error(400, 100, "(#100) Object does not exist")
        fields = _top_level(request.query_params.get("fields", "id,created_time"))
        return self._messages(request, conversation, fields, None)

    async def _node(self, request: Request) -> Response:
        node = request.path_params["node"]
        if node in self.oauth.pages:
            return await page_node(self, request, node)
        if node in self.conversations:
            return await self._conversation(request, self.conversations[node])
        found = self._find_message(node)
        if found is not None:
            return await self._message(request, *found)
        if "from" in _top_level(request.query_params.get("fields", "")):
            owner = self._gate(request)  # a message we do not hold
            return (
                owner if isinstance(owner, Response) else _error(400, 100, "(#100) No such object")
            )
        return await self._profile(request)

    async def _conversation(self, request: Request, conversation: Conversation) -> Response:
        owner = self._gate(request)
        if isinstance(owner, Response):
            return owner
        if conversation.account_id != owner[0]:
            return _error(400, 100, "(#100) Object does not exist")
        wanted = _MESSAGES_FIELD.match(request.query_params.get("fields", ""))
        if wanted is None:
            return self._json({"id": conversation.id})
        limit = int(wanted.group(1)) if wanted.group(1) else None
        fields = _top_level(wanted.group(2) or "id,created_time")
        return self._messages(request, conversation, fields, limit, nested=True)

    def _messages(
        self, request: Request, conversation: Conversation, fields: list[str],
        limit: int | None, *, nested: bool = False,
    ) -> Response:  # fmt: skip
        unknown = self.unknown_fields.intersection(fields)
        if unknown:
            name = sorted(unknown)[0]
            return _error(400, 100, f"(#100) Tried accessing nonexisting field ({name})")
        detailed = DETAILED if self.details_in_listing else 0
        items = [_render(m, fields, i < detailed) for i, m in enumerate(conversation.messages)]
        inner = ",".join(fields)
        page = self._page(
            request, f"{conversation.id}/messages", items, limit=limit,
            next_path=f"/v21.0/{conversation.id}/messages", next_params={"fields": inner},
        )  # fmt: skip
        return self._json({"messages": page, "id": conversation.id} if nested else page)

    async def _message(self, request: Request, conversation: Conversation, index: int) -> Response:
        owner = self._gate(request)
        if isinstance(owner, Response):
            return owner
        fields = _top_level(request.query_params.get("fields", "id,created_time"))
        if conversation.account_id != owner[0]:
            return _error(400, 100, "(#100) Object does not exist")
        if index >= DETAILED:
            return _error(400, 9000001, "The message has been deleted")
        if self.unknown_fields.intersection(fields):
            return _error(400, 100, "(#100) Tried accessing nonexisting field")
        return self._json(_render(conversation.messages[index], fields, True))

    async def _profile(self, request: Request) -> Response:
        igsid = request.path_params["node"]
        self.requests.append({"igsid": igsid, **request.query_params})
        owner = self._gate(request)
        if isinstance(owner, Response):
            return owner
        profile = {
            "id": igsid,
            "name": "Ada Shopper",
            "username": f"shopper_{igsid[-4:]}",
            "profile_pic": f"https://scontent.example/{igsid}.jpg?oe=ABC",
            "follower_count": 321,
            "is_user_follow_business": True,
            "is_business_follow_user": False,
            "is_verified_user": False,
        }
        wanted = request.query_params.get("fields", "").split(",")
        return self._json({k: v for k, v in profile.items() if k in wanted or k == "id"})

    # --- paging -------------------------------------------------------------------------

    def _page(
        self, request: Request, listing: str, items: list[dict[str, Any]], *,
        limit: int | None = None, next_path: str | None = None,
        next_params: dict[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One page of `items` from the request's cursor; `next` unless it is the last."""
        size = limit or int(request.query_params.get("limit", DEFAULT_LIMIT))
        offset, empty = _cursor(request.query_params.get("after"))
        if (listing, offset) in self.empty_pages and not empty:
            data: list[dict[str, Any]] = []
            after = _encode(offset, served_empty=True)
        else:
            data = items[offset : offset + size]
            after = _encode(offset + size) if offset + size < len(items) else None
        page: dict[str, Any] = {"data": data}
        if after is not None:
            params = {**dict(request.query_params), **(next_params or {})}
            params.update({"limit": str(size), "after": after})
            base = str(request.base_url).rstrip("/")
            path = next_path or request.url.path
            query = urlencode(params, safe="{},()")
            page["paging"] = {"cursors": {"after": after}, "next": f"{base}{path}?{query}"}
        return page

    def _find_message(self, mid: str) -> tuple[Conversation, int] | None:
        for conversation in self.conversations.values():
            for index, message in enumerate(conversation.messages):
                if message.mid == mid:
                    return conversation, index
        return None


def _render(message: Message, fields: list[str], detailed: bool) -> dict[str, Any]:
    full: dict[str, Any] = {
        "id": message.mid,
        "created_time": _iso(message.created),
        "from": {"username": f"user_{message.sender[-4:]}", "id": message.sender},
        "to": {"data": [{"username": f"user_{message.recipient[-4:]}", "id": message.recipient}]},
        "message": message.text,
        **message.extra,
    }
    shown = fields if detailed else ["id", "created_time"]
    return {k: v for k, v in full.items() if k in shown or k == "id"}


def _top_level(fields: str) -> list[str]:
    """`a,b{c,d},e` → `[a, b, e]`: the names asked for, their sub-fields dropped."""
    names, depth, current = [], 0, ""
    for char in fields:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            names.append(current)
            current = ""
        else:
            current += char
    names.append(current)
    return [re.split(r"[{.]", name, maxsplit=1)[0].strip() for name in names if name.strip()]


def _cursor(after: str | None) -> tuple[int, bool]:
    if not after:
        return 0, False
    offset, _, empty = base64.urlsafe_b64decode(after.encode()).decode().partition(":")
    return int(offset), empty == "e"


def _encode(offset: int, *, served_empty: bool = False) -> str:
    raw = f"{offset}:{'e' if served_empty else ''}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _error(status: int, code: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbCdEf"}}  # fmt: skip
    return JSONResponse(body, status)
