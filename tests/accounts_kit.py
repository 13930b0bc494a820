"""Settings and helpers for the accounts tests: a service wired to the Graph double for
every Meta host (the OAuth host, the Graph host, the Facebook Graph host)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ingest.accounts.cipher import TokenCipher
from ingest.accounts.registry import INSTAGRAM_LOGIN, Registry
from ingest.config.connect_env import decode_key
from ingest.config.settings import Settings
from tests.doubles.graph_oauth import APP_ID
from tests.meta import wire_bytes

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()  # TOKEN_ENCRYPTION_KEY, tests only
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
ACCOUNT = "17841400000000001"
OTHER_ACCOUNT = "17841400000000002"
CALLBACK = "/api/oauth/instagram/callback"


def account_env(graph_server: tuple[Any, str], **env: str) -> dict[str, str]:
    _, url = graph_server  # `<root>/v21.0`
    return {
        "INSTAGRAM_APP_ID": APP_ID,
        "TOKEN_ENCRYPTION_KEY": KEY,
        "INSTAGRAM_OAUTH_URL": url.removesuffix("/v21.0"),
        "GRAPH_API_URL": url,
        "FACEBOOK_GRAPH_API_URL": url,
        "RECONCILE_GRACE_SECONDS": "0",
        **env,
    }


def account_settings(
    make_settings: Callable[..., Settings], graph_server: tuple[Any, str], **env: str
) -> Settings:
    return make_settings(**account_env(graph_server, **env))


TOKEN_A = "IGAAtoken-of-account-one-0123456789abcdef"
TOKEN_B = "IGAAtoken-of-account-two-fedcba9876543210"
SIXTY_DAYS = 60 * 86_400


async def connected(
    backend: Any,
    account: str,
    token: str,
    *,
    now: datetime | None = None,
    expires_in: int | None = SIXTY_DAYS,
    username: str | None = None,
    key: str = KEY,
) -> None:
    """An account connected through Instagram Login at `now`, its token stored encrypted."""
    cipher = TokenCipher((decode_key(key),))
    await Registry(backend).connect(
        account, source=INSTAGRAM_LOGIN, ciphertext=cipher.encrypt(token, account),
        key_id=cipher.current, now=now or datetime.now(UTC), expires_in=expires_in,
        username=username,
    )  # fmt: skip


def message_to(account: str, mid: str, sender: str, text: str = "hello there") -> bytes:
    """A customer's message to `account`, as Meta delivers it."""
    now = int(time.time() * 1000)
    item = {"sender": {"id": sender}, "recipient": {"id": account}, "timestamp": now,
            "message": {"mid": mid, "text": text}}  # fmt: skip
    return wire_bytes({"object": "instagram",
                       "entry": [{"id": account, "time": now, "messaging": [item]}]})  # fmt: skip


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until `check()` holds (background work: enrichment, schedules)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(0.05)


async def ingestctl(settings: Settings, capsys: Any, *argv: str) -> tuple[int, str]:
    """`ingestctl ARGV` in this process (what `main` does, without a new interpreter):
    its exit code and stdout."""
    from ingest.ops.cli import parser, run
    from ingest.ops.output import Failed

    capsys.readouterr()
    args = parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    try:
        code = await run(args, settings)
    except Failed as exc:
        print(f"ingestctl: {exc}")
        code = exc.code
    return code, capsys.readouterr().out
