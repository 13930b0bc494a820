"""Reading the turn settings (`TurnSettings`) from the environment, once.

Kept apart from `turns` so that `settings` can hold the shape without importing the
reader (imports run `env` → `turn_reader` → `reader`/`settings`/`turns`, never back).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ingest.config.reader import Reader
from ingest.config.secret import Secret
from ingest.config.settings import SettingsError
from ingest.config.turns import OWN_PATH_PREFIXES, TurnSettings, signing_key

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1"})  # noqa: S104 - compared, not bound


def read_turns(reader: Reader) -> TurnSettings | None:
    """None without TURN_WEBHOOK_URL; otherwise every turn variable, checked."""
    url = reader.url("TURN_WEBHOOK_URL")
    if url is None:
        return None
    _refuse_own_routes(url, reader)
    joined = reader.secret("TURN_WEBHOOK_SECRET", required=True)
    assert joined is not None
    secrets = tuple(Secret(part) for part in joined.reveal().split())
    for secret in secrets:
        try:
            signing_key(secret.reveal())
        except ValueError as exc:
            raise SettingsError(f"TURN_WEBHOOK_SECRET is malformed: {exc}") from None
    defaults = TurnSettings(url, secrets)
    quiet = reader.positive_float("TURN_QUIET_SECONDS", defaults.quiet_seconds)
    max_wait = reader.positive_float("TURN_MAX_WAIT_SECONDS", defaults.max_wait_seconds)
    if max_wait < quiet:
        raise SettingsError(
            f"TURN_MAX_WAIT_SECONDS ({max_wait}) must be at least TURN_QUIET_SECONDS ({quiet})"
        )
    return TurnSettings(
        webhook_url=url,
        secrets=secrets,
        quiet_seconds=quiet,
        max_wait_seconds=max_wait,
        max_messages=reader.positive_int("TURN_MAX_MESSAGES", defaults.max_messages),
        hourly_limit=reader.positive_int("TURN_HOURLY_LIMIT", defaults.hourly_limit),
        daily_limit=reader.positive_int("TURN_DAILY_LIMIT", defaults.daily_limit),
    )


def _refuse_own_routes(url: str, reader: Reader) -> None:
    """TURN_WEBHOOK_URL may not name one of our routes on our own host."""
    target = urlsplit(url)
    port = reader.positive_int("PORT", 8000)
    ours = {(host, port) for host in _LOCAL_HOSTS}
    for name in ("PUBLIC_BASE_URL", "PRODUCTION_DOMAIN"):
        base = reader.url(name)
        if base is not None:
            parts = urlsplit(base)
            ours.add(((parts.hostname or "").lower(), parts.port or _default_port(parts.scheme)))
    here = ((target.hostname or "").lower(), target.port or _default_port(target.scheme))
    path = target.path.rstrip("/") or "/"
    if here in ours and any(
        path == prefix or path.startswith(prefix + "/") for prefix in OWN_PATH_PREFIXES
    ):
        raise SettingsError(
            f"TURN_WEBHOOK_URL points at this service's own route ({path}): a hand-off "
            "would call the service itself; give your bot's URL"
        )


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80
