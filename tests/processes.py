"""The service and `ingestctl` as real child processes, for crash tests and drills.

A crash drill must kill a process (`kill -9`), not raise an exception in one: these
helpers start the service exactly as the Procfile does (uvicorn, app factory) on a
free port, and wait until it answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

from tests.doubles.qstash import free_port

INGESTCTL = str(Path(sys.executable).parent / "ingestctl")


def inherited_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}


@contextmanager
def service(
    env: dict[str, str], cwd: Path, output: IO[bytes] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The service as the Procfile starts it, on a free port; killed on the way out.
    `output`: where its stdout and stderr both go (default: stderr kept for errors)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "ingest.app:app_from_env",
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env, cwd=cwd, stdout=output or subprocess.DEVNULL, stderr=output or subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"service did not start: {stderr[-2000:]}")
        time.sleep(0.1)
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
