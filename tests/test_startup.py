"""Start-up as an operator meets it: the real entry points, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ingest.lifecycle.release import wait_and_migrate
from storage.migrations import discover
from tests.doubles.qstash import free_port

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in {"PATH", "HOME"}}
    return subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, **env},
        cwd=ROOT / "tests",  # no .env file is read from here
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_service_refuses_to_start_in_production_and_names_the_missing_variable() -> None:
    result = _run(
        "ingest",
        {
            "APP_ENV": "production",
            "DATABASE_URL": "postgresql://db.example/ingest",
            "META_APP_SECRETS": "a-real-looking-secret",
            "QSTASH_CURRENT_SIGNING_KEY": "sig_a",
            "QSTASH_NEXT_SIGNING_KEY": "sig_b",
        },
    )
    assert result.returncode == 2
    assert "META_VERIFY_TOKEN is required" in result.stderr
    assert "a-real-looking-secret" not in result.stderr + result.stdout


def test_release_step_refuses_malformed_configuration() -> None:
    result = _run("ingest.lifecycle.release", {"APP_ENV": "development", "PORT": "http"})
    assert result.returncode == 2
    assert "PORT is malformed" in result.stderr


async def test_release_waits_for_the_database_within_a_bound(tmp_path: Path) -> None:
    unreachable = f"postgresql://postgres@/postgres?host={tmp_path}&port=5"
    started = time.monotonic()
    with pytest.raises(OSError):
        await wait_and_migrate(unreachable, max_wait_seconds=1.5)
    assert time.monotonic() - started >= 1.0  # it kept trying instead of failing at once


async def test_release_migrates_a_reachable_database(pg_server) -> None:  # type: ignore[no-untyped-def]
    url = pg_server.create_database("release_target")
    try:
        first = await wait_and_migrate(url)
        assert first == [migration.version for migration in discover()]
        assert await wait_and_migrate(url) == []
    finally:
        pg_server.drop_database("release_target")


def _serve_until_ready(data_dir: Path) -> subprocess.Popen[str]:
    """`python -m ingest` as `make run` starts it: development, embedded database."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.isupper() or k in {"PATH", "HOME"}}
    env = {**clean, "APP_ENV": "development", "DATA_DIR": str(data_dir), "PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "ingest"], env=env, cwd=ROOT / "tests",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=0.5).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"the service did not become ready: {process.communicate()[1][-2000:]}")


def _stop_quietly(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)  # as a terminal's Ctrl-C or a supervisor does
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert "Failed" not in stderr and "Traceback" not in stderr, stderr[-2000:]


def test_stopping_the_service_stops_its_embedded_database_even_after_a_kill(
    tmp_path: Path,
) -> None:
    """Stopping `make run` stops its database without complaint; a `kill -9` leaves the
    database running, and the next run reuses it and stops it in turn."""
    pid_file = tmp_path / "pg" / "postmaster.pid"
    _stop_quietly(_serve_until_ready(tmp_path))
    assert not pid_file.exists()
    killed = _serve_until_ready(tmp_path)
    killed.kill()
    killed.wait(timeout=10)
    assert pid_file.exists()  # orphaned, still serving
    _stop_quietly(_serve_until_ready(tmp_path))
    assert not pid_file.exists()
