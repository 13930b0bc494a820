"""Reconcile's settings: which accounts, with which token, how often; errors name the variable."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ingest.config.settings import Settings, SettingsError


def test_nothing_configured_means_no_accounts_and_no_schedule(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    assert settings.graph_accounts == ()
    assert settings.reconcile_interval_seconds == 0
    assert settings.reconcile_grace_seconds == 30.0


def test_one_token_with_or_without_its_account_id(make_settings: Callable[..., Settings]) -> None:
    (account,) = make_settings(INSTAGRAM_ACCESS_TOKEN="IGAAone").graph_accounts
    assert (account.account_id, account.page_id, account.token.reveal()) == (None, None, "IGAAone")
    assert account.conversations_path == "me/conversations"
    (known,) = make_settings(
        INSTAGRAM_ACCESS_TOKEN="IGAAone", INSTAGRAM_ACCOUNT_ID="17841400000000001"
    ).graph_accounts
    assert known.account_id == "17841400000000001"


def test_several_accounts_in_both_flavours(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        INSTAGRAM_ACCESS_TOKEN="IGAAenrich",
        INSTAGRAM_ACCESS_TOKENS=" 17841400000000001:IGAAa , 17841400000000002:1122334455:EAAb,",
    )
    first, second = settings.graph_accounts
    assert (first.account_id, first.page_id, first.conversations_path) == (
        "17841400000000001", None, "me/conversations",
    )  # fmt: skip
    assert (second.account_id, second.page_id, second.conversations_path) == (
        "17841400000000002", "1122334455", "1122334455/conversations",
    )  # fmt: skip
    assert second.token.reveal() == "EAAb"
    assert "EAAb" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"INSTAGRAM_ACCESS_TOKENS": "17841400000000001"}, "INSTAGRAM_ACCESS_TOKENS"),
        ({"INSTAGRAM_ACCESS_TOKENS": "abc:IGAAa"}, "INSTAGRAM_ACCESS_TOKENS"),
        ({"INSTAGRAM_ACCESS_TOKENS": "1:IGAAa,1:IGAAb"}, "INSTAGRAM_ACCESS_TOKENS"),
        ({"INSTAGRAM_ACCESS_TOKENS": "1:2:3:4"}, "INSTAGRAM_ACCESS_TOKENS"),
        ({"INSTAGRAM_ACCESS_TOKENS": "1:changeme"}, "INSTAGRAM_ACCESS_TOKENS"),
        ({"INSTAGRAM_ACCOUNT_ID": "17841400000000001"}, "INSTAGRAM_ACCOUNT_ID"),
        ({"INSTAGRAM_ACCESS_TOKEN": "t0k", "INSTAGRAM_ACCOUNT_ID": "me"}, "INSTAGRAM_ACCOUNT_ID"),
        ({"RECONCILE_INTERVAL_SECONDS": "300"}, "RECONCILE_INTERVAL_SECONDS"),
        ({"RECONCILE_INTERVAL_SECONDS": "-1"}, "RECONCILE_INTERVAL_SECONDS"),
        ({"RECONCILE_INTERVAL_SECONDS": "often"}, "RECONCILE_INTERVAL_SECONDS"),
        ({"RECONCILE_GRACE_SECONDS": "-5"}, "RECONCILE_GRACE_SECONDS"),
    ],
)
def test_a_malformed_value_stops_start_up_naming_the_variable_never_the_token(
    make_settings: Callable[..., Settings], env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        make_settings(**env)
    assert named in str(raised.value)
    assert "IGAA" not in str(raised.value)


def test_a_schedule_with_a_token(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        INSTAGRAM_ACCESS_TOKEN="IGAAone", RECONCILE_INTERVAL_SECONDS="300",
        RECONCILE_GRACE_SECONDS="0",
    )  # fmt: skip
    assert (settings.reconcile_interval_seconds, settings.reconcile_grace_seconds) == (300, 0.0)
