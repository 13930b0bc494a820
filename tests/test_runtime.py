"""The long-running entry points tune the garbage collector once the app is built
(`ingest.runtime`); checked in child processes, since tuning this one would change how
every later test's objects are collected."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import BASE_ENV
from tests.processes import inherited_env

ROOT = Path(__file__).resolve().parent.parent
REPORT = "import gc; print(gc.get_freeze_count(), gc.get_threshold()[0])"


def frozen_and_young_threshold(code: str, env: dict[str, str] | None = None) -> tuple[int, int]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; {REPORT}"], env={**inherited_env(), **(env or {})},
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    frozen, young = done.stdout.split()[-2:]
    return int(frozen), int(young)


def test_a_plain_python_process_is_not_tuned() -> None:
    assert frozen_and_young_threshold("import ingest.app") == (0, 700)


def test_the_procfile_web_factory_freezes_the_start_up_heap_and_collects_young_less_often(
    database_url: str,
) -> None:
    env = {**BASE_ENV, "DATABASE_URL": database_url, "LOG_LEVEL": "error"}
    frozen, young = frozen_and_young_threshold(
        "from ingest.app import app_from_env; app_from_env()", env
    )
    assert frozen > 50_000  # modules, pydantic's schemas, the app: never walked again
    assert young == 50_000
