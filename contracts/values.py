"""The bounds every event keeps, on both sides: what the database and QStash can hold.

A value that breaks one is made storable where it can be without changing what it
means, and refused where it cannot:

- free text (a message, a title, a payload, any string inside `raw`): lone surrogates
  and U+0000, which neither UTF-8 nor PostgreSQL's `jsonb` can hold, become U+FFFD;
  floats that are not finite become null;
- identifiers (mids, user and account ids, fields) feed dedup IDs and primary keys,
  so they are never rewritten: one that is too long for an index or carries such a
  code point is refused, and the edge keeps its item as an `unsupported` event instead;
- integers are bounded to what their columns hold; `raw` to a nesting depth.

The producer's parser, the internal route and the consumer all validate through
these, so every event the producer accepts is one the consumer can parse and store.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

MAX_ID_LENGTH = 512  # real mids are ~150 characters; a btree entry holds ~2,700 bytes
MAX_DEPTH = 32  # real items nest 6 deep
MAX_MILLIS = 10**15  # year 33658: beyond it a timestamp is not a time
MAX_EDITS = 2**31 - 1  # an `integer` column
REPLACEMENT = "\ufffd"


class NotStorable(ValueError):
    """A value the database cannot hold as it is, and that must not be rewritten."""


def is_clean(text: str) -> bool:
    """No lone surrogate (UTF-8 cannot encode it) and no U+0000 (`jsonb` refuses it)."""
    if text.isascii():
        return "\x00" not in text
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def clean_text(text: str) -> str:
    """`text`, or a copy with each lone surrogate and U+0000 replaced by U+FFFD."""
    if is_clean(text):
        return text
    return "".join(REPLACEMENT if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in text)


def clean_json(value: Any, depth: int = 0) -> Any:
    """`value` made storable as `jsonb` (keys and strings cleaned, non-finite floats null),
    returned as it is when nothing needed cleaning; deeper than `MAX_DEPTH` is refused."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise NotStorable(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            cleaned_list = [clean_json(v, depth + 1) for v in value]
            same = all(a is b for a, b in zip(cleaned_list, value, strict=True))
            return value if same else cleaned_list
        cleaned = {clean_text(k): clean_json(v, depth + 1) for k, v in value.items()}
        if len(cleaned) == len(value) and all(
            k in value and cleaned[k] is value[k] for k in cleaned
        ):
            return value
        return cleaned
    return value


def check_id(value: str) -> str:
    if len(value) > MAX_ID_LENGTH:
        raise NotStorable(f"an identifier longer than {MAX_ID_LENGTH} characters")
    if not is_clean(value):
        raise NotStorable("an identifier with a lone surrogate or U+0000")
    return value


# Validation context from a caller that has made every value storable already (the
# webhook's parser, for a body with nothing to clean): `raw` is then not walked again.
STORABLE = {"storable": True}


def _clean_raw(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, dict) or (info.context or {}).get("storable"):
        return value
    return clean_json(value)


Text = Annotated[str, BeforeValidator(lambda v: clean_text(v) if isinstance(v, str) else v)]
Id = Annotated[str, AfterValidator(check_id)]
Raw = Annotated[dict[str, Any], BeforeValidator(_clean_raw)]
Millis = Annotated[int, Field(ge=0, lt=MAX_MILLIS)]
