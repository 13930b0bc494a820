"""Deduplication IDs: the one place that decides when two events are the same.

A ``mid`` names a message, not every event about it, so each kind has its own
prefix: a reaction or an edit never shares an ID with the message it refers to.

QStash accepts only ``[A-Za-z0-9_-]`` in practice (a ``:`` is rejected), and we
use ``_`` to separate parts, so every part is escaped *reversibly*: ``-`` becomes
``--`` and any other character outside ``[A-Za-z0-9]`` becomes ``-XX`` per UTF-8
byte (a lone surrogate included, as its surrogate-escaped bytes). Nothing is
dropped, so distinct events can never map to the same ID. An ID longer than a
database index holds comfortably is replaced by its prefix and a SHA-256 digest.

v2 (the contract's current version) puts the account into the IDs of reads,
postbacks, referrals, changes and unsupported items, so that two Instagram accounts
on one app never collide; a v1 event keeps the ID it was admitted under.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
MAX_LENGTH = 1000  # the ledger's primary key and QStash's header stay far below their limits
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_PLAIN = re.compile(r"[A-Za-z0-9]*")


# Each ASCII character is one UTF-8 byte: its escape, ready for `str.translate`.
_ASCII_ESCAPES = {
    code: chr(code) if code in _SAFE else "--" if code == 0x2D else f"-{code:02X}"
    for code in range(128)
}


def escape_part(value: object) -> str:
    """Map any value into ``[A-Za-z0-9-]`` reversibly (see `unescape_part`)."""
    text = "" if value is None else str(value)
    if _PLAIN.fullmatch(text):
        return text
    if text.isascii():  # the same bytes as below, escaped in one pass in C
        return text.translate(_ASCII_ESCAPES)
    return _escape_bytes(text)


def _escape_bytes(text: str) -> str:
    """The definition: per UTF-8 byte (a lone surrogate as its surrogate-escaped bytes)."""
    out: list[str] = []
    for byte in text.encode("utf-8", "surrogatepass"):
        if byte in _SAFE:
            out.append(chr(byte))
        elif byte == 0x2D:  # "-"
            out.append("--")
        else:
            out.append(f"-{byte:02X}")
    return "".join(out)


def unescape_part(part: str) -> str:
    """Inverse of `escape_part`; used by tests and by operators reading the ledger."""
    raw = bytearray()
    i = 0
    while i < len(part):
        char = part[i]
        if char != "-":
            raw += char.encode()
            i += 1
        elif part[i + 1] == "-":
            raw += b"-"
            i += 2
        else:
            raw.append(int(part[i + 1 : i + 3], 16))
            i += 3
    return raw.decode("utf-8", "surrogatepass")


def raw_digest(raw: Any) -> str:
    """A short, stable digest of a raw item (Meta redelivers the same JSON); a string
    (an item kept as JSON text) is digested as it is."""
    if isinstance(raw, str):
        canonical = raw
    else:
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _join(*parts: object) -> str:
    return "_".join(escape_part(part) for part in parts)


def _bounded(prefix: str, rest: str) -> str:
    if len(prefix) + len(rest) <= MAX_LENGTH:
        return prefix + rest
    return prefix + "--" + hashlib.sha256(rest.encode()).hexdigest()


def dedup_id(f: Mapping[str, Any]) -> str:
    """The QStash deduplication ID and ledger key of one event, from its field values by
    name (every kind has the common fields; one row per kind is pinned in
    `tests/test_dedup_ids.py`). It takes a mapping, not the event model, so that this module
    imports nothing of the contract's and the models call it from one place."""
    kind, account, sender, timestamp = (
        str(f["kind"]),
        f["account_id"],
        f["sender_id"],
        f["timestamp"],
    )
    v1 = f["v"] == 1
    match kind:
        case "message":
            return _bounded("ig_msg_", _join(f["mid"]))
        case "message_edit":
            return _bounded("ig_edit_", _join(f["mid"], f["num_edit"]))
        case "message_unsend":
            return _bounded("ig_del_", _join(f["mid"]))
        case "reaction":
            emoji = f["emoji"] or f["reaction"]
            return _bounded("ig_react_", _join(f["mid"], sender, f["action"], emoji, timestamp))
        case "read" if v1:
            return _bounded("ig_read_", _join(sender, f["mid"] or f["watermark"]))
        case "read":
            return _bounded("ig_read_", _join(account, sender, f["mid"] or f["watermark"]))
        case "change" if v1:
            return _bounded("ig_change_", _join(f["field"], f["object_id"] or raw_digest(f["raw"])))
    digest = raw_digest(f.get("raw_text") or f["raw"])
    if v1:
        return _bounded(f"ig_{escape_part(kind)}_", _join(sender, timestamp, digest))
    return _bounded(f"ig_{escape_part(kind)}_", _join(account, sender, timestamp, digest))
