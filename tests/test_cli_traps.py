"""The small traps a newcomer met, each closed: `forget` asks on a terminal, Ctrl-C ends
`tail` and `relay` with a sentence (no traceback), `monitor --days 0` is refused and its top
senders are customers, relay lag counts the relay's time (not a hold), a control character
in a message reaches no terminal as itself."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.console import reads
from storage.postgres import PostgresBackend
from tests.conftest import BASE_ENV, open_client, wait_settled
from tests.meta import fixture, post, text_message, wire_bytes

INGESTCTL = str(Path(sys.executable).parent / "ingestctl")
CUSTOMER = "1234567890123456"
ACCOUNT = "17841400000000001"


def _env(database_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**clean, **BASE_ENV, "DATABASE_URL": database_url}


@pytest.fixture
def ctl(database_url: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [INGESTCTL, *args], env=_env(database_url), capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip

    return run


def _on_a_terminal(database_url: str, *args: str, answer: str) -> tuple[int, str]:
    """`ingestctl` with a terminal for stdin and stdout; `answer` typed at its question."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [INGESTCTL, *args], env=_env(database_url), stdin=follower, stdout=follower,
        stderr=follower, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    seen, answered = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other side closed: the command ended
                break
            seen += chunk
        if not answered and b"type yes" in seen:
            os.write(leader, answer.encode() + b"\n")
            answered = True
        if process.poll() is not None and not ready:
            break
    os.close(leader)
    return process.wait(timeout=10), seen.decode(errors="replace")


async def test_forget_on_a_terminal_shows_what_would_go_and_erases_only_on_yes(
    database_url: str, settings: Settings, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(settings)):
        await post(client, text_message("m_forget_me"))
        await wait_settled(backend)
    declined, said = _on_a_terminal(database_url, "forget", CUSTOMER, answer="no")
    assert declined == 1 and "would remove:" in said and "nothing erased" in said
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 1
    confirmed, said = _on_a_terminal(database_url, "forget", CUSTOMER, answer="yes")
    assert confirmed == 0, said
    assert await backend.pool.fetchval("select count(*) from ig_messages") == 0


def test_forget_from_a_script_needs_yes(ctl: Callable[..., Any]) -> None:
    refused = ctl("forget", CUSTOMER)
    assert refused.returncode == 2
    assert "pass --yes to confirm" in refused.stderr


def _interruptible_popen(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Ctrl-C as at a terminal, even under a runner that ignores SIGINT (a background job
    does, and a child inherits the ignoring: Python would then never see it). The handler
    is set here around the fork, not in `preexec_fn`, which is unsafe beside threads."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(args, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("command", [["tail"], ["relay"]])
def test_ctrl_c_stops_tail_and_relay_with_a_sentence_not_a_traceback(
    database_url: str, command: list[str]
) -> None:
    process = _interruptible_popen(
        [INGESTCTL, *command], env=_env(database_url), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    started = process.stderr.readline()  # "following new messages…" / "relaying…"
    assert "Ctrl-C to stop" in started, started + process.communicate()[1]
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=30)
    stderr = started + rest
    assert process.returncode == 130, stderr
    assert stderr.rstrip().endswith("ingestctl: stopped")
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_monitor_refuses_zero_days(ctl: Callable[..., Any]) -> None:
    refused = ctl("monitor", "--days", "0")
    assert refused.returncode == 2
    assert "--days takes a whole number from 1 to 366" in refused.stderr


async def test_monitor_top_senders_are_customers_not_the_business_account(
    ctl: Callable[..., Any], settings: Settings, backend: PostgresBackend
) -> None:
    async for client in open_client(create_app(settings)):
        await post(client, text_message("m_customer_asks"))
        for n in range(3):
            echo = fixture("echo")
            echo["entry"][0]["messaging"][0]["message"]["mid"] = f"m_business_answers_{n}"
            await post(client, wire_bytes(echo))
        await wait_settled(backend)
    senders = json.loads(ctl("monitor", "--json").stdout)["top_senders"]
    assert [s["sender_id"] for s in senders] == [CUSTOMER]


async def test_relay_lag_counts_from_the_replay_not_from_the_hold(
    settings: Settings, backend: PostgresBackend
) -> None:
    await backend.call(
        "ingest_set_kill_switch", {"p_active": True, "p_reason": "t", "p_by": "t", "p_hold": True}
    )
    async for client in open_client(create_app(settings)):
        await post(client, text_message("m_held_long"))
        assert await wait_settled(backend) == {"held": 1}
        await backend.pool.execute(  # held for 40 minutes
            "update ingest_ledger set admitted_at = now() - interval '40 minutes'"
        )
        await backend.call(
            "ingest_set_kill_switch",
            {"p_active": False, "p_reason": None, "p_by": "t", "p_hold": False},
        )
        await backend.call("ingest_replay", {"p_states": ["held"]})
        assert await wait_settled(backend) == {"direct": 1}
    pulse = await reads.pulse(backend, 100)
    assert pulse.lag.events == 1
    assert pulse.lag.max is not None and pulse.lag.max < 60


def test_a_message_with_a_terminal_escape_prints_as_visible_text() -> None:
    from ingest.ops.messages import line

    row = {
        "sent_at": "2026-12-07T01:02:03+00:00", "direction": "in", "customer": CUSTOMER,
        "kind": "text", "text": "red \x1b[31malert\x1b[0m\nnext line \u202eevil",
        "attachments": [], "reactions": [], "edit_count": 0,
    }  # fmt: skip
    printed = line(row)
    assert "\x1b" not in printed and "\n" not in printed and "\u202e" not in printed
    assert printed.endswith(r"red \x1b[31malert\x1b[0m\nnext line \u202eevil")
    assert line(row, width=40) == printed[:39] + "…"
