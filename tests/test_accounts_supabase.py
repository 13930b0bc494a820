"""The account registry over Supabase's REST `rpc` (a real PostgREST): connect, the OAuth
state, a refresh's claim and its end, a 190, an environment token, a deauthorization and
a rotation go through the same SQL functions as over asyncpg."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.accounts.cipher import TokenCipher
from ingest.accounts.registry import Registry
from ingest.config.connect_env import decode_key
from storage.supabase import SupabaseBackend
from tests.accounts_kit import ACCOUNT, KEY, NEW_KEY, OTHER_ACCOUNT, SIXTY_DAYS, TOKEN_A, TOKEN_B
from tests.test_supabase_backend import rpc  # noqa: F401 - the fixture

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def test_the_registry_works_through_postgrest(rpc: SupabaseBackend) -> None:  # noqa: F811
    registry, cipher = Registry(rpc), TokenCipher((decode_key(KEY),))
    sealed = cipher.encrypt(TOKEN_A, ACCOUNT)
    row = await registry.connect(ACCOUNT, source="instagram_login", ciphertext=sealed,
                                 key_id=cipher.current, now=T0, expires_in=SIXTY_DAYS,
                                 username="shop_one", app_user_id="app_1")  # fmt: skip
    assert (row["account_id"], row["state"]) == (ACCOUNT, "active")
    await registry.issue_state("nonce-1", 600)
    assert [await registry.use_state("nonce-1"), await registry.use_state("nonce-1")] == [
        True,
        False,
    ]
    later = T0 + timedelta(days=50)
    due = await registry.claim_refresh("a", later, lease_seconds=60, min_age_seconds=86_400,
                                       within_seconds=10 * 86_400)  # fmt: skip
    assert [d["account_id"] for d in due] == [ACCOUNT]
    assert await registry.claim_refresh("b", later, lease_seconds=60, min_age_seconds=86_400,
                                        within_seconds=10 * 86_400) == []  # fmt: skip
    renewed = cipher.encrypt(TOKEN_B, ACCOUNT)
    assert await registry.refreshed(ACCOUNT, "a", later, renewed, cipher.current, SIXTY_DAYS)
    assert await registry.environment(OTHER_ACCOUNT, None, TOKEN_B) == "active"
    await registry.graph_error(OTHER_ACCOUNT, 190, reauth=True)
    assert await registry.environment(OTHER_ACCOUNT, None, TOKEN_B) == "needs_reauth"
    new = TokenCipher((decode_key(NEW_KEY),)).encrypt(TOKEN_B, ACCOUNT)
    assert await registry.rekey(ACCOUNT, renewed, new, "newkey")
    await rpc.call("ig_account_forget_token", {"p_app_user_id": "app_1"})
    states = {r["account_id"]: r["state"] for r in await registry.overview()}
    assert states == {ACCOUNT: "deauthorized", OTHER_ACCOUNT: "needs_reauth"}
    tokens = {r["account_id"]: r for r in await registry.tokens()}
    assert tokens[OTHER_ACCOUNT]["usable"] is False
    assert ACCOUNT not in tokens or tokens[ACCOUNT]["ciphertext"] is None
