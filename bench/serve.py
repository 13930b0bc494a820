"""One server process for a benchmark: `python -m bench.serve app|bare PORT`.

`app` is the real service (settings from the environment); `bare` is the baseline:
a Starlette endpoint that only checks the HMAC and parses the JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BARE_SECRET = b"bench-meta-secret"


def bare_app() -> Starlette:
    async def webhook(request: Request) -> Response:
        body = await request.body()
        given = request.headers.get("x-hub-signature-256", "").removeprefix("sha256=")
        expected = hmac.new(BARE_SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given, expected):
            return JSONResponse({"status": "unauthorized"}, status_code=401)
        payload = json.loads(body)
        return JSONResponse({"status": "accepted", "events": len(payload["entry"])})

    return Starlette(routes=[Route("/api/webhooks/instagram", webhook, methods=["POST"])])


def qstash_app() -> Starlette:
    """The QStash double in its own process (so it never shares a GIL with the load),
    plus `GET /_stats` for the number of API calls it received."""
    from tests.doubles.qstash import QStashDouble

    double = QStashDouble()

    async def stats(request: Request) -> Response:
        return JSONResponse({"requests": len(double.requests)})

    async def reset(request: Request) -> Response:
        double.reset()
        return JSONResponse({"status": "reset"})

    app = double.app
    app.router.routes.append(Route("/_stats", stats, methods=["GET"]))
    app.router.routes.append(Route("/_reset", reset, methods=["POST"]))
    return app


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "bare":
        app = bare_app()
    elif kind == "qstash":
        app = qstash_app()
    else:
        from ingest.app import create_app
        from ingest.config.env import settings_from_env
        from ingest.logging import configure_logging
        from ingest.runtime import tune_gc

        settings = settings_from_env(env_file=None)
        configure_logging(settings.log_level)
        app = create_app(settings)
        tune_gc()  # as the Procfile's web process does (`ingest.app.app_from_env`)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
