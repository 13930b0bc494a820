"""What the app factory builds and hands down: the database backend, the outbound HTTP
client, the QStash publisher (with its own client, `ingest.delivery.poster`), the relay,
the profile enricher, the turn relay.

`ingest.app` wires them into the web app; `ingestctl` builds the same ones for its
commands (relay, replay, reconcile), so a command and the service never differ.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from functools import cache

import httpx

from consumers.enrichment import Credentials, OneToken, ProfileEnricher
from consumers.processing import Processor
from ingest.config.settings import Settings
from ingest.config.turns import signing_key
from ingest.delivery.poster import AiohttpPoster
from ingest.delivery.publisher import PublishConfig, QStashPublisher
from ingest.delivery.relay import Relay, RelayConfig
from ingest.delivery.settlement import PassResult
from ingest.turns.relay import TurnRelay
from ingest.turns.settlement import TurnPass
from ingest.turns.transport import FAILURE_PATH as TURN_FAILURE_PATH
from ingest.turns.transport import DirectSender, TurnPublisher
from storage import Backend
from storage.postgres import PostgresBackend
from storage.supabase import SupabaseBackend


def make_backend(settings: Settings, http: httpx.AsyncClient | None = None) -> Backend:
    """Direct Postgres when `DATABASE_URL` is set (fastest), else Supabase's REST `rpc`."""
    if settings.database_url is not None:
        return PostgresBackend(settings.database_url.reveal())
    if settings.supabase_url is not None and settings.supabase_service_role_key is not None:
        return SupabaseBackend(
            settings.supabase_url, settings.supabase_service_role_key.reveal(), http
        )
    raise RuntimeError(
        "no database configured: set DATABASE_URL, SUPABASE_URL, or run `python -m ingest` "
        "which starts the embedded database"
    )


@cache
def _tls() -> ssl.SSLContext:
    """The TLS context httpx builds by default (certifi's CAs; SSL_CERT_FILE and SSL_CERT_DIR
    honoured), once per process: loading the CA bundle takes ~20 ms, which every app built
    paid again (the tests build some 600)."""
    return httpx.create_ssl_context()


def make_http_client() -> httpx.AsyncClient:
    """One shared client for outbound calls (Graph API, PostgREST); bounded everywhere."""
    return httpx.AsyncClient(
        verify=_tls(),
        timeout=httpx.Timeout(10.0, connect=3.0),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


def make_publisher(settings: Settings, base_url: str) -> QStashPublisher | None:
    """None without `QSTASH_TOKEN`: events are then processed directly, by design."""
    if settings.qstash_token is None:
        return None
    config = PublishConfig(
        qstash_url=settings.qstash_url,
        token=settings.qstash_token.reveal(),
        base_url=base_url,
        label=settings.qstash_label,
        budget_seconds=settings.publish_budget_seconds,
    )
    return QStashPublisher(AiohttpPoster(), config)


def make_relay(
    settings: Settings,
    backend: Backend,
    processor: Processor,
    *,
    on_pass: Callable[[PassResult], None] | None = None,
) -> Relay:
    """The relay as the service runs it (and `ingestctl relay`, `ingestctl replay`); its
    owner calls `aclose()` once it has stopped (the publisher's connections)."""
    base_url = settings.public_base_url or f"http://localhost:{settings.port}"
    return Relay(
        backend,
        settings.safety,
        publisher=make_publisher(settings, base_url),
        direct=processor.process,
        config=RelayConfig(
            lease_seconds=settings.safety.lease_seconds,
            sweep_seconds=settings.relay_sweep_seconds,
        ),
        on_pass=on_pass,
    )


def make_enricher(
    settings: Settings,
    backend: Backend,
    http: httpx.AsyncClient,
    credentials: Credentials | None = None,
) -> ProfileEnricher | None:
    """None without a token anywhere (environment, or a key to store connected accounts'):
    profiles then hold what webhooks tell. `credentials`: each account's own token (the
    account registry's book); without it, `INSTAGRAM_ACCESS_TOKEN` for everyone."""
    if not (settings.graph_accounts or settings.accounts.stores_tokens):
        return None
    if credentials is None:
        if settings.instagram_access_token is None:
            return None
        token = settings.instagram_access_token.reveal()
        credentials = OneToken(token, settings.graph_api_url)
    return ProfileEnricher(backend, http, credentials)


def make_turn_relay(
    settings: Settings,
    backend: Backend,
    http: httpx.AsyncClient,
    *,
    on_pass: Callable[[TurnPass], None] | None = None,
) -> TurnRelay | None:
    """None without `TURN_WEBHOOK_URL`: no turns, no task, nothing to pay."""
    turns = settings.turns
    if turns is None:
        return None
    keys = tuple(signing_key(secret.reveal()) for secret in turns.secrets)
    base_url = settings.public_base_url or f"http://localhost:{settings.port}"
    publisher = None
    if settings.qstash_token is not None:
        publisher = TurnPublisher(
            http,
            qstash_url=settings.qstash_url,
            token=settings.qstash_token.reveal(),
            destination=turns.webhook_url,
            failure_callback=base_url + TURN_FAILURE_PATH,
            keys=keys,
            timeout_seconds=settings.publish_budget_seconds,
        )
    return TurnRelay(
        backend,
        turns,
        settings.safety,
        direct=DirectSender(http, turns.webhook_url, keys),
        publisher=publisher,
        on_pass=on_pass,
    )
