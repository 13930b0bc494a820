"""A Graph API double for `GET /{version}/{igsid}?fields=...&access_token=...`.

Answers like graph.instagram.com: the requested profile fields as JSON, or an error
body `{"error": {"message", "type", "code", "error_subcode", "is_transient",
"fbtrace_id"}}` with the status Meta uses. Tests queue errors to exercise the
classification in INSTAGRAM.md §7.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TOKEN = "IGAAtest-graph-token"
BASE_URL = "http://graph.instagram.test/v21.0"


@dataclass
class GraphApiDouble:
    requests: list[dict[str, str]] = field(default_factory=list)
    errors: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)

    def fail_next(self, status: int, code: int, *, transient: bool = False, times: int = 1) -> None:
        body = {
            "error": {
                "message": f"programmed error {code}",
                "type": "OAuthException",
                "code": code,
                "error_subcode": None,
                "is_transient": transient,
                "fbtrace_id": "AbCdEf",
            }
        }
        for _ in range(times):
            self.errors.append((status, body))

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v21.0/{igsid}", self._profile, methods=["GET"])])

    async def _profile(self, request: Request) -> Response:
        self.requests.append({"igsid": request.path_params["igsid"], **request.query_params})
        if request.query_params.get("access_token") != TOKEN:
            return JSONResponse({"error": {"code": 190, "message": "bad token"}}, status_code=400)
        if self.errors:
            status, body = self.errors.popleft()
            return JSONResponse(body, status_code=status)
        igsid = request.path_params["igsid"]
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
        return JSONResponse({k: v for k, v in profile.items() if k in wanted or k == "id"})
