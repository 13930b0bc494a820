"""Where QStash can reach us: decided once at start-up, and logged.

`PUBLIC_BASE_URL` (or its alias `PRODUCTION_DOMAIN`) wins; else a running ngrok
tunnel, asked through ngrok's local API; else `http://localhost:<port>`, which
only the QStash dev server can call (cloud QStash refuses loopback URLs).
Every process that may publish (the web process, the worker, and `ingestctl relay
--once`, `replay` and `reconcile` relaying in their own process) decides it with
`with_public_base_url`, so that QStash is given the same URL whichever of them published.
"""

from __future__ import annotations

import dataclasses

import httpx
import structlog

from ingest.config.settings import Settings, SettingsError

NGROK_API = "http://127.0.0.1:4040/api/tunnels"

log = structlog.get_logger(__name__)


def ngrok_public_url(api: str = NGROK_API, *, timeout: float = 0.5) -> str | None:
    """The https tunnel's public URL (else any tunnel's), or None when ngrok is not running."""
    try:
        response = httpx.get(api, timeout=timeout)
        response.raise_for_status()
        tunnels = response.json().get("tunnels", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    urls: list[str] = [
        url
        for tunnel in tunnels
        if isinstance(tunnel, dict)
        and isinstance(url := tunnel.get("public_url"), str)
        and url.startswith(("https://", "http://"))
    ]
    https = [u for u in urls if u.startswith("https://")]
    chosen = https or urls
    return chosen[0].rstrip("/") if chosen else None


def with_public_base_url(settings: Settings) -> Settings:
    """`settings` with `public_base_url` decided (`resolve_base_url`) when the environment
    left it unset; raises `SettingsError` when it cannot be, each caller saying so its way."""
    if settings.public_base_url is not None:
        return settings
    return dataclasses.replace(settings, public_base_url=resolve_base_url(settings))


def resolve_base_url(settings: Settings, *, ngrok_api: str | None = None) -> str:
    """The URL QStash calls. Outside development, publishing to QStash with nothing
    better than localhost is refused (cloud QStash would refuse every publish, and
    every event would quietly be stored directly instead). `ngrok_api`: ngrok's local
    API (`NGROK_API`, read when called)."""
    if settings.public_base_url:
        url, source = settings.public_base_url, "PUBLIC_BASE_URL"
    elif tunnel := ngrok_public_url(ngrok_api or NGROK_API):
        url, source = tunnel, "ngrok"
    elif settings.publishes_to_qstash and not settings.development:
        raise SettingsError(
            "PUBLIC_BASE_URL is required with QSTASH_TOKEN outside development: QStash must "
            "reach this service at a public URL (it refuses localhost), and no ngrok tunnel runs"
        )
    else:
        url, source = f"http://localhost:{settings.port}", "local"
    log.info("public_base_url", url=url, source=source)
    return url
