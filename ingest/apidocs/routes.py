"""`GET /openapi.yaml`, `GET /docs`, `GET /`: read once at start-up, answered from memory."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts.http import answer
from contracts.schema import OPENAPI_PATH
from ingest.config.settings import Settings

CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
METHODS = ("get", "post", "put", "patch", "delete")


def routes(settings: Settings, spec_path: Path = OPENAPI_PATH) -> list[BaseRoute]:
    """The three routes, or none with `API_DOCS=false` (or no `openapi.yaml` beside the
    code, as in an installed wheel: then there is nothing true to serve)."""
    if not settings.api_docs.enabled or not spec_path.is_file():
        return []
    raw = spec_path.read_bytes()
    page = _page(raw)

    async def openapi(request: Request) -> Response:
        return Response(raw, media_type="application/yaml", headers=HEADERS)

    async def docs(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def root(request: Request) -> Response:
        return answer(
            200, "ok", service="instagram-ingest", docs="/docs", openapi="/openapi.yaml",
            health="/readyz",
        )  # fmt: skip

    return [
        Route("/", root, methods=["GET"]),
        Route("/openapi.yaml", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]


# libyaml's loader where PyYAML has it (ten times faster than the pure-Python one)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=2)
def _page(raw: bytes) -> bytes:
    """The page for this very file: an app built again on the same file (tests build
    hundreds) renders it once."""
    return render(yaml.load(raw, Loader=_LOADER)).encode()  # noqa: S506 (safe: either loader)


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation, in the file's order, with what the page shows of it."""
    found = []
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            found.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "tags": operation.get("tags", []),
                    "parameters": [_parameter(p) for p in operation.get("parameters", [])],
                    "body": sorted((operation.get("requestBody") or {}).get("content", {})),
                    "responses": [
                        (code, _response(spec, response))
                        for code, response in operation.get("responses", {}).items()
                    ],
                }
            )
    return found


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    schema = parameter.get("schema") or {}
    return {
        "name": parameter.get("name", ""),
        "in": parameter.get("in", ""),
        "required": bool(parameter.get("required")),
        "type": schema.get("type", ""),
        "description": parameter.get("description", ""),
    }


def _response(spec: dict[str, Any], response: dict[str, Any]) -> str:
    """A response's description, following one `$ref` to `components/responses`."""
    ref = response.get("$ref", "")
    if ref.startswith("#/components/responses/"):
        response = spec.get("components", {}).get("responses", {}).get(ref.rsplit("/", 1)[1], {})
    text = str(response.get("description", ""))
    kinds = ", ".join(sorted(response.get("content", {})))
    return f"{text} ({kinds})" if kinds else text


_TEMPLATE = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
).get_template("docs.html")


def render(spec: dict[str, Any]) -> str:
    """The description as one HTML page: every route, its parameters, body and answers."""
    return _TEMPLATE.render(
        info=spec.get("info", {}), version=spec.get("openapi", ""), operations=operations(spec)
    )
