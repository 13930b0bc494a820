"""A PostgREST double that answers only what a test programs, nothing else.

The Supabase backend is tested against a real PostgREST (tests/supabase_stack.py).
This double stays for the answers no real server here can be made to give without
taking the session's database away or faking a gateway:

- `PGRST000` (503, the database unreachable) and `PGRST003` (504, the pool timed out);
- `PGRST100` (400, a malformed query string: supabase-py's `rpc` never builds one);
- `40001` (serialization failure): PostgREST 12 retries a transaction that fails with
  it inside itself (hasql-transaction), without end and without answering, even after
  the client has gone; a function that raises it every time keeps it busy for good;
- what a proxy in front of PostgREST answers on its own, with no PostgREST body:
  a 502 HTML page, 429, 408, 413.

Every request is recorded; with nothing programmed it answers 500, so a test that
forgot to program an answer fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class PostgrestDouble:
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    programmed: list[tuple[str | None, Response]] = field(default_factory=list)

    def answer_next(
        self, status: int, body: dict[str, Any] | str, *, function: str | None = None
    ) -> None:
        """Answer the next call (of `function` only, when given) with `status` and `body`."""
        if isinstance(body, str):
            response: Response = Response(body, status_code=status, media_type="text/html")
        else:
            response = JSONResponse(body, status_code=status)
        self.programmed.append((function, response))

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/rest/v1/rpc/{function}", self._rpc, methods=["POST"])])

    async def _rpc(self, request: Request) -> Response:
        self.requests.append((request.url.path, dict(request.headers), await request.body()))
        called = request.path_params["function"]
        for index, (function, response) in enumerate(self.programmed):
            if function in (None, called):
                del self.programmed[index]
                return response
        return Response("nothing programmed", status_code=500)
