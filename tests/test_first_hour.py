"""The README's "First ten minutes", as a newcomer lives them: `python -m ingest` (what
`make run` starts) on the embedded database, `ingestctl send-sample`, `ingestctl
messages`, `ingestctl status`, a second start on a busy port, Ctrl-C, and `ingestctl`
once the service (and its database) has stopped. Real processes throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.doubles.qstash import free_port

ROOT = Path(__file__).resolve().parent.parent
INGESTCTL = str(Path(sys.executable).parent / "ingestctl")


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log: Path

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.startswith("{")]

    def ctl(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [INGESTCTL, *args], env={**self.env, **env}, cwd=ROOT / "tests",
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip


def _environment(data_dir: Path, port: int) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in {"PATH", "HOME"}}
    return {**clean, "APP_ENV": "development", "DATA_DIR": str(data_dir), "PORT": str(port)}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module: starting the embedded database is the slow part."""
    data_dir = tmp_path_factory.mktemp("first_hour")
    port = free_port()
    env = _environment(data_dir, port)
    log = data_dir / "service.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest"], env=env, cwd=ROOT / "tests",
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError(f"the service did not become ready: {log.read_text()[-2000:]}")
    yield Service(process, url, env, log)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_the_start_up_line_says_where_it_listens_and_what_is_on(service: Service) -> None:
    started = [line for line in service.lines() if line["event"] == "started"]
    assert len(started) == 1
    line = started[0]
    assert line["level"] == "info"
    assert line["listen"] == service.url
    assert line["qstash"] == "off (direct processing)"
    assert line["console"] == "off (set CONSOLE_TOKEN)"
    assert line["reconcile"] == "off"
    assert line["metrics"] == "/metrics (public)"


def test_send_sample_takes_either_url_and_prints_the_services_answer_on_one_line(
    service: Service,
) -> None:
    first = service.ctl("send-sample", "--url", service.url)
    second = service.ctl("send-sample", "--url", f"{service.url}/api/webhooks/instagram/")
    for sent in (first, second):
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.count("\n") == 1  # one line, the service's own JSON
        answer = json.loads(sent.stdout)
        assert answer == {"status": "accepted", "error": None, "events": 1, "new": 1,
                          "duplicate": 0, "failed": 0}  # fmt: skip  # a fresh mid: never a duplicate
    again = service.ctl("send-sample", "--url", service.url, "--mid", "m_chosen")
    assert json.loads(again.stdout)["new"] == 1
    repeated = service.ctl("send-sample", "--url", service.url, "--mid", "m_chosen")
    assert json.loads(repeated.stdout)["duplicate"] == 1


def test_send_sample_to_nothing_exits_4_saying_the_service_is_unreachable(
    service: Service,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    sent = service.ctl("send-sample", "--url", nowhere)
    assert sent.returncode == 4, sent.stderr
    assert "cannot be reached" in sent.stderr and "is it running" in sent.stderr
    assert "database" not in sent.stderr and "Traceback" not in sent.stderr


def test_messages_lists_what_was_stored_newest_first_whole_when_piped(service: Service) -> None:
    service.ctl("send-sample", "--url", service.url, "--mid", "m_listed")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listed = service.ctl("messages", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        if any(r["mid"] == "m_listed" for r in rows):
            break
        time.sleep(0.3)
    assert rows[0]["mid"] == "m_listed"  # newest first
    assert rows[0]["text"] == "Hi! Is the blue one available?"
    assert (rows[0]["direction"], rows[0]["customer"], rows[0]["kind"]) == (
        "in", "1234567890123456", "text",
    )  # fmt: skip
    human = service.ctl("messages", "--limit", "1")
    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines() == [human.stdout.strip()]
    assert human.stdout.rstrip().endswith(
        " in   1234567890123456  text        Hi! Is the blue one available?"
    )
    mine = service.ctl("messages", "--customer", "nobody", "--json")
    assert json.loads(mine.stdout) == []
    since = service.ctl("messages", "--since", "2000-01-01", "--customer", "1234567890123456")
    assert since.returncode == 0 and "m_listed" not in since.stdout  # text only, no mids
    assert "Hi! Is the blue one available?" in since.stdout
    future = service.ctl("messages", "--since", "2999-01-01T00:00:00+00:00")
    assert future.stdout.strip() == "no messages stored"


def test_status_shows_stored_totals_and_deauthorised_accounts(service: Service) -> None:
    status = service.ctl("status")
    assert status.returncode == 0, status.stderr
    assert "stored      : " in status.stdout and "customer(s)" in status.stdout
    assert "deauthorised: none" in status.stdout
    totals = json.loads(service.ctl("status", "--json").stdout)["stored"]
    assert totals["customers"] == 1 and totals["messages"] >= 1


def test_a_second_start_on_a_busy_port_says_which_variable_to_change(service: Service) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "ingest"], env=service.env, cwd=ROOT / "tests",
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert second.returncode == 2
    assert "Set PORT to a free port" in second.stderr
    assert '"started"' not in second.stdout and "Traceback" not in second.stderr


def test_ctrl_c_logs_what_was_accepted_then_stopped_and_ingestctl_says_the_database_is_down(
    service: Service,
) -> None:
    """Last in the module: it stops the service."""
    service.process.send_signal(signal.SIGINT)
    service.process.wait(timeout=30)
    events = [line["event"] for line in service.lines()]
    assert events[-1] == "stopped"
    accepted = [line for line in service.lines() if line["event"] == "accepted"]
    assert sum(int(str(line["deliveries"])) for line in accepted) >= 4
    assert all(line["level"] == "info" for line in accepted)
    down = service.ctl("status")
    assert down.returncode == 3
    assert f"the embedded database at {service.env['DATA_DIR']}/pg is not running" in down.stderr
    assert "start the service (make run)" in down.stderr
    assert "Error" not in down.stderr
    assert not (Path(service.env["DATA_DIR"]) / "pg" / "postmaster.pid").exists()  # not restarted
