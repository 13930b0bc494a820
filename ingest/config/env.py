"""Reading `Settings` from the environment (and `.env`): every variable parsed once, here.

Only `APP_ENV=development` relaxes anything: documented development defaults for the
secrets, the embedded database, optional QStash signing keys. How one variable is read
and which values are refused outside development: `ingest.config.reader`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from starlette.config import Config

from ingest.config.accounts import GraphAccount, read_accounts
from ingest.config.apidocs import read_api_docs
from ingest.config.background import read_background
from ingest.config.connect_env import read_account_settings
from ingest.config.guards import guards
from ingest.config.reader import (
    CONSOLE_SECRET_MIN_LENGTH,
    CONSOLE_TOKEN_MIN_LENGTH,
    DEFAULT_GRAPH_API_URL,
    DEFAULT_LABEL,
    DEFAULT_QSTASH_URL,
    DEFAULT_RECONCILE_GRACE_SECONDS,
    DEV_INTERNAL_TOKEN,
    DEV_META_SECRET,
    DEV_VERIFY_TOKEN,
    LOG_LEVELS,
    Reader,
    boolean,
    non_negative,
    published,
)
from ingest.config.secret import Secret
from ingest.config.settings import (
    DEV_CONSOLE_SESSION_SECRET,
    ConsoleAccess,
    Retention,
    SafetyLimits,
    Settings,
    SettingsError,
)
from ingest.config.turn_reader import read_turns


def read_settings(environ: Mapping[str, str], env_file: str | Path | None = ".env") -> Settings:
    """Settings from `environ` and `env_file`; real environment variables win over the
    file, as with every dotenv tool."""
    env_path = Path(env_file) if env_file is not None else None
    if env_path is not None and not env_path.is_file():
        env_path = None
    return _SettingsReader(Config(env_file=env_path, environ=dict(environ))).settings()


class _SettingsReader(Reader):
    """The variables of `Settings`, each read and checked once."""

    def meta_secrets(self) -> tuple[Secret, ...]:
        joined = self.secret("META_APP_SECRETS", required=True, dev_default=DEV_META_SECRET)
        assert joined is not None
        secrets = tuple(Secret(s.strip()) for s in joined.reveal().split(",") if s.strip())
        if not secrets:
            raise SettingsError("META_APP_SECRETS holds no secret")
        if not self.development and any(published(s.reveal()) for s in secrets):
            raise SettingsError(
                "META_APP_SECRETS holds a placeholder or a published development secret"
            )
        return secrets

    def graph_accounts(self) -> tuple[GraphAccount, ...]:
        """Reconcile's accounts: INSTAGRAM_ACCESS_TOKENS when set, else the one token."""
        try:
            return read_accounts(
                self.secret("INSTAGRAM_ACCESS_TOKENS", required=False),
                self.secret("INSTAGRAM_ACCESS_TOKEN", required=False),
                self.raw("INSTAGRAM_ACCOUNT_ID"),
                refuse=None if self.development else published,
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    def settings(self) -> Settings:
        app_env = self.app_env()
        database_url = self.secret("DATABASE_URL", required=False)
        supabase_url = self.url("SUPABASE_URL")
        supabase_key = self.secret("SUPABASE_SERVICE_ROLE_KEY", required=supabase_url is not None)
        if not self.development and database_url is None and supabase_url is None:
            raise SettingsError(
                "DATABASE_URL or SUPABASE_URL is required outside development (the embedded "
                "database is for local use only: APP_ENV=development uses it, as `make run` does)"
            )
        qstash_token = self.secret("QSTASH_TOKEN", required=False)
        signing_required = qstash_token is not None or not self.development
        permanent_status = self.typed("CONSUMER_PERMANENT_STATUS", int, 489)
        if permanent_status not in (400, 489):
            raise SettingsError(
                f"CONSUMER_PERMANENT_STATUS must be 489 or 400, got {permanent_status}"
            )
        label = self.raw("QSTASH_LABEL") or DEFAULT_LABEL
        accounts = self.graph_accounts()
        interval = self.typed("RECONCILE_INTERVAL_SECONDS", int, 0)
        if interval < 0:
            raise SettingsError(
                f"RECONCILE_INTERVAL_SECONDS must be 0 (off) or more, got {interval}"
            )
        if interval and not accounts and self.raw("TOKEN_ENCRYPTION_KEY") is None:
            raise SettingsError(
                "RECONCILE_INTERVAL_SECONDS needs INSTAGRAM_ACCESS_TOKEN or INSTAGRAM_ACCESS_TOKENS"
                " (or TOKEN_ENCRYPTION_KEY, for accounts connected through the service)"
            )
        if "," in label:
            raise SettingsError("QSTASH_LABEL cannot contain a comma (QStash splits labels on it)")
        return Settings(
            app_env=app_env,
            host=self.raw("HOST") or "127.0.0.1",
            port=self.positive_int("PORT", 8000),
            log_level=self.choice("LOG_LEVEL", LOG_LEVELS, "info"),
            public_base_url=self.url("PUBLIC_BASE_URL") or self.url("PRODUCTION_DOMAIN"),
            meta_app_secrets=self.meta_secrets(),
            meta_verify_token=self._required_secret("META_VERIFY_TOKEN", DEV_VERIFY_TOKEN),
            internal_api_token=self.secret(
                "INTERNAL_API_TOKEN", required=False, dev_default=DEV_INTERNAL_TOKEN
            ),
            max_body_bytes=self.positive_int("MAX_BODY_BYTES", 1024 * 1024),
            qstash_token=qstash_token,
            qstash_url=self.url("QSTASH_URL", DEFAULT_QSTASH_URL) or DEFAULT_QSTASH_URL,
            qstash_current_signing_key=self.secret(
                "QSTASH_CURRENT_SIGNING_KEY", required=signing_required
            ),
            qstash_next_signing_key=self.secret(
                "QSTASH_NEXT_SIGNING_KEY", required=signing_required
            ),
            qstash_label=label,
            qstash_leeway_seconds=self.typed("QSTASH_LEEWAY_SECONDS", non_negative, 30),
            publish_budget_seconds=self.positive_float("PUBLISH_BUDGET_SECONDS", 4.0),
            consumer_permanent_status=permanent_status,
            database_url=database_url,
            supabase_url=supabase_url,
            supabase_service_role_key=supabase_key,
            data_dir=Path(self.raw("DATA_DIR") or ".data"),
            instagram_access_token=self.secret("INSTAGRAM_ACCESS_TOKEN", required=False),
            graph_api_url=self.url("GRAPH_API_URL", DEFAULT_GRAPH_API_URL) or DEFAULT_GRAPH_API_URL,
            graph_accounts=accounts,
            reconcile_interval_seconds=interval,
            reconcile_grace_seconds=self.non_negative_float(
                "RECONCILE_GRACE_SECONDS", DEFAULT_RECONCILE_GRACE_SECONDS
            ),
            metrics_token=self.secret("METRICS_TOKEN", required=False),
            metrics_public=self.typed("METRICS_PUBLIC", boolean, False),
            console=self.console(),
            safety=self.safety(),
            relay_sweep_seconds=self.positive_float("RELAY_SWEEP_SECONDS", 1.0),
            retention=self.retention(),
            accounts=read_account_settings(self),
            guards=guards(self),
            api_docs=read_api_docs(self, boolean),
            background=read_background(self, boolean),
            turns=read_turns(self),
        )

    def safety(self) -> SafetyLimits:
        defaults = SafetyLimits()
        return SafetyLimits(
            daily_messages=self.positive_int("QSTASH_DAILY_MESSAGES", defaults.daily_messages),
            breaker_max_events=self.positive_int("BREAKER_MAX_EVENTS", defaults.breaker_max_events),
            breaker_window_seconds=self.positive_int(
                "BREAKER_WINDOW_SECONDS", defaults.breaker_window_seconds
            ),
            sender_hourly_limit=self.positive_int(
                "SENDER_HOURLY_LIMIT", defaults.sender_hourly_limit
            ),
            sender_daily_limit=self.positive_int("SENDER_DAILY_LIMIT", defaults.sender_daily_limit),
            lease_seconds=self.positive_int("LEDGER_LEASE_SECONDS", defaults.lease_seconds),
        )

    def retention(self) -> Retention:
        defaults = Retention()
        return Retention(
            ledger_days=self.positive_int("LEDGER_RETENTION_DAYS", defaults.ledger_days),
            dead_letter_days=self.positive_int(
                "DEAD_LETTER_RETENTION_DAYS", defaults.dead_letter_days
            ),
            interval_seconds=self.typed("PRUNE_INTERVAL_SECONDS", non_negative, 0),
        )

    def console(self) -> ConsoleAccess | None:
        """`CONSOLE_TOKEN` turns `/console` on; its cookies are then signed with
        `CONSOLE_SESSION_SECRET` (a documented default in development only). In production
        the token guards the kill switch and the secret every session: neither may be short."""
        token = self.secret("CONSOLE_TOKEN", required=False)
        if token is None:
            return None
        secret = self._required_secret("CONSOLE_SESSION_SECRET", DEV_CONSOLE_SESSION_SECRET)
        for name, value, length in (
            ("CONSOLE_TOKEN", token, CONSOLE_TOKEN_MIN_LENGTH),
            ("CONSOLE_SESSION_SECRET", secret, CONSOLE_SECRET_MIN_LENGTH),
        ):
            if self.development:
                continue
            if value.reveal() == DEV_CONSOLE_SESSION_SECRET:  # whatever `secret` refuses
                raise SettingsError(f"{name} holds a placeholder value; set a real secret")
            if len(value.reveal()) < length:
                raise SettingsError(
                    f"{name} needs at least {length} characters outside development"
                )
        return ConsoleAccess(token, secret)

    def _required_secret(self, name: str, dev_default: str) -> Secret:
        value = self.secret(name, required=True, dev_default=dev_default)
        assert value is not None
        return value


def settings_from_env(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Settings from `environ` (default: the process environment) and `env_file`.

    Real environment variables win over the file, as with every dotenv tool.
    """
    return read_settings(os.environ if environ is None else environ, env_file)


def load_or_exit(environ: Mapping[str, str] | None = None) -> Settings:
    """For entry points: the settings, or the message naming the variable and exit status 2."""
    try:
        return settings_from_env(environ)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
