"""`.env.example` and the README's table list exactly the variables the settings read."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _variables_read_by_settings() -> set[str]:
    source = "\n".join(p.read_text() for p in sorted((ROOT / "ingest" / "config").glob("*.py")))
    names = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', source)) - {"T"}
    assert {"DATABASE_URL", "META_APP_SECRETS", "QSTASH_TOKEN"} <= names, "settings moved?"
    return names


def test_env_example_lists_every_variable_the_settings_read() -> None:
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert listed == _variables_read_by_settings() - {"PRODUCTION_DOMAIN"}


def test_readme_configuration_table_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", readme, flags=re.MULTILINE))
    assert documented >= _variables_read_by_settings()
