"""`make run` serves with the runtime dependencies only; `make test` and `make lint` add
the `dev` extra (the test tools). Read from `make -n` in a copy without a `.venv`, as
on a fresh clone: what each target would install."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _plan(target: str, where: Path) -> str:
    for name in ("Makefile", "pyproject.toml", "package.json", "package-lock.json"):
        shutil.copy(ROOT / name, where / name)
    planned = subprocess.run(
        ["make", "-n", target], cwd=where, capture_output=True, text=True, timeout=30, check=False
    )
    assert planned.returncode == 0, planned.stderr
    return planned.stdout


def test_make_run_on_a_fresh_clone_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    plan = _plan("run", tmp_path)
    assert "pip install --quiet -e .;" in plan
    assert "[dev]" not in plan
    assert "-m ingest" in plan


@pytest.mark.parametrize("target", ["test", "lint"])
def test_make_test_and_lint_install_the_dev_extra(target: str, tmp_path: Path) -> None:
    assert "pip install --quiet -e '.[dev]'" in _plan(target, tmp_path)


def test_the_test_tools_are_in_the_dev_extra_not_the_runtime() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    for tool in ("pytest", "schemathesis", "hypothesis", "selenium", "ruff", "mypy"):
        assert tool not in runtime
        assert any(d.startswith(tool) for d in project["optional-dependencies"]["dev"])
