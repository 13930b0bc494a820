"""`ingestctl status` as an operator reads it: every account once, in the words and the
shape a script can rely on (`--json`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.config.settings import Settings
from storage.postgres import PostgresBackend
from tests.accounts_kit import ACCOUNT, OTHER_ACCOUNT, TOKEN_A, TOKEN_B, connected, ingestctl

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def test_status_names_each_account_once_and_a_deauthorised_one_only_as_deauthorised(
    settings: Settings, backend: PostgresBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    await connected(backend, ACCOUNT, TOKEN_A, now=T0)
    await connected(backend, OTHER_ACCOUNT, TOKEN_B, now=T0)
    await backend.pool.execute(
        "update ig_accounts set app_user_id = 'app-user-2' where account_id = $1", OTHER_ACCOUNT
    )
    await backend.call("ig_deauthorize", {"p_app_user_id": "app-user-2"})

    code, human = await ingestctl(settings, capsys, "status")
    assert code == 0, human
    lines = human.splitlines()
    assert [line for line in lines if ACCOUNT in line] == [
        f"account     : {ACCOUNT} ACTIVE (expires 2027-02-05)"
    ]
    gone = [line for line in lines if OTHER_ACCOUNT in line]
    assert len(gone) == 1, gone
    assert gone[0].startswith(f"deauthorised: {OTHER_ACCOUNT} (at 20")

    code, raw = await ingestctl(settings, capsys, "status", "--json")
    assert code == 0, raw
    data = json.loads(raw)
    assert raw.count(OTHER_ACCOUNT) == 1  # one entry, not one per section
    by_id = {a["account_id"]: a for a in data["accounts"]}
    assert sorted(by_id) == [ACCOUNT, OTHER_ACCOUNT]
    assert (by_id[ACCOUNT]["state"], by_id[ACCOUNT]["deauthorized_at"]) == ("active", None)
    assert by_id[OTHER_ACCOUNT]["state"] == "deauthorized"
    assert by_id[OTHER_ACCOUNT]["deauthorized_at"] is not None
    assert set(data["stored"]) == {"messages", "customers", "messages_today"}
    assert data["deauthorized_accounts"] == 1  # the count the metrics and the console show
