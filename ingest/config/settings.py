"""Settings: read once from the environment (and `.env`), validated, then passed down.

The shapes live here; `ingest.config.env` reads them, and is the one place where
a variable is parsed. A missing or malformed value raises `SettingsError` naming
the variable, so start-up stops with a message a person can act on. Secrets are
wrapped in `Secret` so that no repr, log line or traceback ever shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ingest.config.accounts import GraphAccount
from ingest.config.apidocs import ApiDocs
from ingest.config.background import BackgroundWork
from ingest.config.connect import AccountSettings
from ingest.config.guards import Guards
from ingest.config.secret import Secret as Secret  # re-exported: one class, two homes
from ingest.config.turns import TurnSettings

DEV_CONSOLE_SESSION_SECRET = "dev-console-session-secret"  # noqa: S105 - development default


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


class AppEnv(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


@dataclass(frozen=True, slots=True)
class SafetyLimits:
    """What QStash may cost (the relay's safety gate), and how long a relay's claim lasts.

    Every limit counts QStash messages, not events: what the gate refuses is stored
    directly instead. Per-sender limits count a customer's own inbound events only.
    """

    daily_messages: int = 10_000
    breaker_max_events: int = 1_000
    breaker_window_seconds: int = 60
    sender_hourly_limit: int = 60
    sender_daily_limit: int = 300
    lease_seconds: int = 30

    def as_gate(self) -> dict[str, int]:
        """The `p_limits` argument of `ingest_relay_claim`."""
        return {
            "daily_messages": self.daily_messages,
            "breaker_max_events": self.breaker_max_events,
            "breaker_window_seconds": self.breaker_window_seconds,
            "sender_hourly_limit": self.sender_hourly_limit,
            "sender_daily_limit": self.sender_daily_limit,
        }


@dataclass(frozen=True, slots=True)
class Retention:
    """How long settled ledger rows and dead-letter bodies are kept (docs/privacy.md).

    30 days is twenty times Meta's ~36 h redelivery horizon: a redelivery older than the
    ledger row it would match is admitted again, and may cost one more QStash message."""

    ledger_days: int = 30
    dead_letter_days: int = 14
    interval_seconds: int = 0  # 0: only `ingestctl prune`


@dataclass(frozen=True, slots=True)
class ConsoleAccess:
    """The operator console's door: `/console` exists only when this is set."""

    token: Secret
    session_secret: Secret


@dataclass(frozen=True, slots=True)
class Settings:
    app_env: AppEnv
    host: str
    port: int
    log_level: str
    public_base_url: str | None
    meta_app_secrets: tuple[Secret, ...]
    meta_verify_token: Secret
    internal_api_token: Secret | None
    max_body_bytes: int
    qstash_token: Secret | None
    qstash_url: str
    qstash_current_signing_key: Secret | None
    qstash_next_signing_key: Secret | None
    qstash_label: str
    qstash_leeway_seconds: int
    publish_budget_seconds: float
    consumer_permanent_status: int
    database_url: Secret | None
    supabase_url: str | None
    supabase_service_role_key: Secret | None
    data_dir: Path
    instagram_access_token: Secret | None
    graph_api_url: str
    graph_accounts: tuple[GraphAccount, ...]
    reconcile_interval_seconds: int
    reconcile_grace_seconds: float
    metrics_token: Secret | None
    metrics_public: bool
    console: ConsoleAccess | None
    safety: SafetyLimits
    relay_sweep_seconds: float
    retention: Retention
    accounts: AccountSettings = field(default_factory=AccountSettings)
    guards: Guards = field(default_factory=Guards)
    api_docs: ApiDocs = field(default_factory=ApiDocs)
    background: BackgroundWork = field(default_factory=BackgroundWork)
    turns: TurnSettings | None = None  # None: TURN_WEBHOOK_URL unset, no hand-off

    @property
    def development(self) -> bool:
        """Only `development` relaxes anything (docs/configuration.md)."""
        return self.app_env is AppEnv.DEVELOPMENT

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None and self.supabase_url is None

    @property
    def publishes_to_qstash(self) -> bool:
        return self.qstash_token is not None
