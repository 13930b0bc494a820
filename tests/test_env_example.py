"""`.env.example` lists exactly the variables the settings read, and the documentation
(README.md and docs/*.md, where the configuration table lives) has a row for each."""

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


def test_the_documentation_has_a_table_row_for_every_variable() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages)
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", text, flags=re.MULTILINE))
    assert documented >= _variables_read_by_settings()


def test_the_readme_stays_short_and_starts_with_the_first_ten_minutes() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## First ten minutes", "## Layout"]
