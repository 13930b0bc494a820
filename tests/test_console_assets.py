"""The console's own files: htmx vendored as one checked file, no inline script or style.

The strict Content-Security-Policy holds only if nothing the console serves relies on
inline code: these checks read every template, so a new one cannot slip an `onclick`,
a `style=` or an `hx-on` past review (the browser test catches what they miss).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

CONSOLE = Path(__file__).resolve().parent.parent / "ingest" / "console"
STATIC = CONSOLE / "static"
TEMPLATES = sorted((CONSOLE / "templates").glob("*.html"))
VENDORED = tomllib.loads((STATIC / "htmx.vendored.toml").read_text())


def test_the_vendored_htmx_is_the_recorded_file() -> None:
    content = (STATIC / "htmx.min.js").read_bytes()
    assert hashlib.sha256(content).hexdigest() == VENDORED["sha256"]
    assert f'version:"{VENDORED["version"]}"'.encode() in content
    assert VENDORED["package"] == "htmx.org" and VENDORED["version"].startswith("2.")


def test_its_licence_is_recorded_beside_it() -> None:
    assert VENDORED["license"] == "0BSD"
    assert "Zero-Clause BSD" in (STATIC / "htmx.LICENSE").read_text()


def test_templates_load_nothing_from_elsewhere_and_run_no_inline_code() -> None:
    assert len(TEMPLATES) >= 10
    for template in TEMPLATES:
        html = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=\"/console/static/)", html), template.name
        assert "<style" not in html, template.name
        assert not re.search(r"\sstyle=", html), template.name
        assert not re.search(r"\son[a-z]+=", html), template.name
        assert "hx-on" not in html, template.name
        assert "javascript:" not in html, template.name
        assert not re.search(r"(src|href)=\"(https?:)?//", html), template.name


def test_htmx_is_told_not_to_inject_styles_nor_eval() -> None:
    base = (CONSOLE / "templates" / "base.html").read_text()
    config = re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', base)
    assert config is not None
    import json

    settings = json.loads(config.group(1))
    assert settings["includeIndicatorStyles"] is False
    assert settings["allowEval"] is False
    assert settings["historyCacheSize"] == 0  # no page snapshots (message text) in storage
