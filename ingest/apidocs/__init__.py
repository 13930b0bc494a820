"""The API's own description, served: `/openapi.yaml` (the repository's file, byte for
byte), `/docs` (that file rendered on the server as plain HTML: no script, no CDN, a
strict Content-Security-Policy) and `/` (where to go next). Public by default, the
description being no secret; `API_DOCS=false` takes all three away.

May import `contracts` and `ingest.config`. Imported by the app factory only.
"""

from __future__ import annotations

from ingest.apidocs.routes import routes

__all__ = ["routes"]
