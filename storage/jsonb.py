"""JSON for PostgreSQL's jsonb, which cannot hold U+0000 in any string.

A signed delivery containing a NUL character (in a key or a value) would be
refused by the database and redelivered by Meta for hours. We replace U+0000 with
U+FFFD (the replacement character) instead: the rest of the item is kept as sent.
The scan is a substring check on the encoded text, so the usual case costs nothing.
Both backends use it: asyncpg through `dumps` (its jsonb codec), PostgREST through
`without_nul` on the arguments (a real PostgREST passes `\u0000` on, and the
database refuses it with 22P05).
"""

from __future__ import annotations

import json
from typing import Any

_NUL_ESCAPE = "\\u0000"


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_replace_nul(k): _replace_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_nul(v) for v in value]
    return value


class RawJson(str):
    """JSON text serialised already (pydantic does it in Rust): sent to jsonb as it is,
    instead of being parsed into Python objects only to be serialised again."""


def dumps(value: Any) -> str:
    if isinstance(value, RawJson):
        text = str(value)
        if _NUL_ESCAPE in text:
            text = json.dumps(_replace_nul(json.loads(text)), separators=(",", ":"))
        return text
    text = json.dumps(value, separators=(",", ":"))
    if _NUL_ESCAPE in text:
        text = json.dumps(_replace_nul(value), separators=(",", ":"))
    return text


def plain(value: Any) -> Any:
    """`value` with `RawJson` parsed, for clients that serialise arguments themselves."""
    return json.loads(value) if isinstance(value, RawJson) else value


def without_nul(value: Any) -> Any:
    """`value` itself, or a copy with U+0000 replaced wherever it occurs."""
    if _NUL_ESCAPE in json.dumps(value, separators=(",", ":")):
        return _replace_nul(value)
    return value
