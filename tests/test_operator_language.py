"""What an operator reads is a sentence: no exception class names in refusals (the CLI,
the console banner, the audit trail all read the storage error's own words), and a
configuration error lists the values it would take."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from ingest.app import create_app
from ingest.config.settings import Settings, SettingsError
from ingest.ops import audit
from ingest.ops import replay as replaying
from ingest.ops.audit import Actor
from storage import DataRejected, StorageUnavailable
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV, open_client
from tests.console import CONSOLE_ENV, sign_in

HTMX = {"HX-Request": "true"}

# `RaiseError:`, `InvalidParameterValueError:`, `ConnectionRefusedError:`, `PostgREST P0001:`
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception|Violation)\b|PostgREST P0")


async def test_a_refusal_from_the_database_reads_as_its_own_sentence(
    backend: PostgresBackend,
) -> None:
    with pytest.raises(DataRejected) as refused:
        await backend.call("ig_forget", {"p_igsid": "", "p_account": None, "p_dry_run": True})
    assert str(refused.value) == "an IGSID is required"
    assert refused.value.sqlstate is not None  # what kind it was stays known, for code


async def test_a_database_that_cannot_be_reached_is_described_not_named(tmp_path: Any) -> None:
    unreachable = PostgresBackend(f"postgresql://postgres@/x?host={tmp_path}&port=9")
    with pytest.raises(StorageUnavailable) as down:  # noqa: PT012 (open is lazy or not)
        await unreachable.open()
        await unreachable.ping()
    assert str(down.value).startswith("the database")
    assert not CLASS_NAME.search(str(down.value)), str(down.value)


async def test_a_replay_refused_while_holding_is_recorded_and_raised_as_a_sentence(
    backend: PostgresBackend,
) -> None:
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True}
    )
    with pytest.raises(replaying.ReplayRefused) as refused:
        await replaying.replay(backend, Actor("alice", "cli"), replaying.ReplayFilter())
    assert str(refused.value).startswith("the kill switch is holding events")
    (entry,) = await audit.recent(backend)
    assert entry.outcome.startswith("refused: the kill switch is holding events")
    assert not CLASS_NAME.search(entry.outcome), entry.outcome


async def test_the_console_says_up_front_that_a_replay_is_refused_and_names_no_class(
    make_settings: Callable[..., Settings], backend: PostgresBackend
) -> None:
    """The preview says so before anyone confirms; the refusal itself (a stale form) and
    the audit row read the same sentence."""
    async for console in open_client(create_app(make_settings(**CONSOLE_ENV))):
        csrf = await sign_in(console)
        await backend.call(
            "ingest_set_kill_switch",
            {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True},
        )
        asked = {"csrf_token": csrf, "scope": "all", "state": "held"}
        preview = await console.post("/console/replay/preview", data=asked, headers=HTMX)
        assert preview.status_code == 200
        assert "replay is refused now" in preview.text
        assert "The kill switch is holding events; deactivate it before replaying." in preview.text
        assert 'id="replay-confirm-button"' not in preview.text
        refused = await console.post(
            "/console/replay", data={**asked, "expected": "0"}, headers=HTMX
        )
        assert refused.status_code == 409
        assert "holding events" in refused.text
        assert not CLASS_NAME.search(refused.text)
    outcomes = [entry.outcome for entry in await audit.recent(backend)]
    assert any(o.startswith("refused: the kill switch is holding") for o in outcomes), outcomes
    assert not [o for o in outcomes if CLASS_NAME.search(o)]


@pytest.mark.parametrize(
    ("name", "value", "listed"),
    [
        ("APP_ENV", "dev", "development, test, production"),
        ("LOG_LEVEL", "verbose", "debug, info, warning, error, critical"),
    ],
)
def test_a_value_out_of_a_closed_set_is_refused_listing_the_valid_ones(
    make_settings: Callable[..., Settings], name: str, value: str, listed: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        make_settings(**{name: value})
    assert str(refused.value) == f"{name} must be one of {listed}; got {value!r}"


def test_ingestctl_outside_development_without_a_database_says_how_to_use_the_embedded_one(
    make_settings: Callable[..., Settings],
) -> None:
    assert BASE_ENV["APP_ENV"] == "test"
    with pytest.raises(SettingsError) as refused:
        make_settings(DATABASE_URL=None)
    assert "APP_ENV=development" in str(refused.value)
