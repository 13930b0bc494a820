"""A PostgREST double for `/rest/v1/rpc/<function>`, backed by the real test database.

It checks what PostgREST (behind Supabase's gateway) checks for a service-role call
(`apikey` header and `Authorization: Bearer` with the same key), runs the named
function with the JSON body as named arguments on real PostgreSQL, and answers the
way PostgREST does: 200 with the function's JSON result, or an error body
`{"code", "message", "details", "hint"}` where `code` is the SQLSTATE (400 for data
errors) or a PGRST code (503 PGRST000 when the database is unreachable). Tests can
queue programmed answers to exercise the error mapping.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from storage import DataRejected, StorageUnavailable
from storage.postgres import PostgresBackend

SERVICE_ROLE_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"


@dataclass
class PostgrestDouble:
    backend: PostgresBackend
    key: str = SERVICE_ROLE_KEY
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    programmed: deque[Response] = field(default_factory=deque)

    def answer_next(self, status: int, body: dict[str, Any] | str) -> None:
        if isinstance(body, str):
            self.programmed.append(Response(body, status_code=status, media_type="text/html"))
        else:
            self.programmed.append(JSONResponse(body, status_code=status))

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/rest/v1/rpc/{function}", self._rpc, methods=["POST"])])

    async def _rpc(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append((request.url.path, dict(request.headers), body))
        if (
            request.headers.get("apikey") != self.key
            or request.headers.get("authorization") != f"Bearer {self.key}"
        ):
            return _error(401, "PGRST301", "JWT invalid")
        if self.programmed:
            return self.programmed.popleft()
        args = await request.json()
        try:
            result = await self.backend.call(request.path_params["function"], args)
        except DataRejected as exc:
            return _error(400, exc.sqlstate or "22000", str(exc))
        except StorageUnavailable as exc:
            return _error(503, "PGRST000", str(exc))
        return JSONResponse(result)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "details": None, "hint": None}, status_code=status
    )
