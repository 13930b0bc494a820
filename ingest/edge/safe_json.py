"""Untrusted JSON in, bounded in depth and in work; what cannot be held, marked, not lost.

`json.loads` recurses once per nesting level (100,000 `[` is a `RecursionError`),
turns a 5,000-digit integer into a `ValueError`, and accepts `NaN`. A signed webhook
may carry any of these, and must still be answered and kept. So:

- a value nested deeper than `MAX_NESTING` is cut out before parsing and kept as
  its original text (`Deep`); the scan that finds it runs only when the body has
  enough brackets to be that deep, and is linear;
- an integer too long for a `bigint` is kept as its digits (`BigNumber`), a
  non-finite constant as its token (`NonFinite`);
- `exact_dumps` writes a value back as JSON text with those kept verbatim, for an
  item that must be stored as text (`UnsupportedEvent.raw_text`).

`Loaded.clean` says whether anything needed care: no marker, no nesting beyond the
contract's depth, no U+0000 and no lone surrogate (only `\\u` escapes can carry them:
strict UTF-8 and strict JSON rule out the rest). A clean body is the common case, and
costs a substring and a regular-expression search over the body (the parser's own hooks
see numbers and constants); one with surrogate escapes (every emoji, as Meta escapes
them) two passes more, to tell pairs from lone halves.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, NamedTuple

from contracts.values import MAX_DEPTH

MAX_NESTING = 256  # the envelope's own levels plus far more than any item needs
_MAX_INT_DIGITS = 18  # always fits a bigint
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# A surrogate written as UTF-8 bytes (ED A0..BF ..): not UTF-8, but `json` lets it through.
_ENCODED_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
_SURROGATE_PAIR = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class Marked(str):
    """A value `json` cannot hold as it was sent; its text is kept verbatim."""


class BigNumber(Marked):
    """An integer longer than a bigint, as its digits."""


class NonFinite(Marked):
    """`NaN`, `Infinity` or `-Infinity`, as the token."""


class Deep(Marked):
    """A value nested beyond `MAX_NESTING`, as its original JSON text."""


class Loaded(NamedTuple):  # a tuple: built once per delivery, ~4x cheaper than a dataclass
    value: Any
    clean: bool


def loads(body: bytes) -> Loaded:
    """Parse `body`; raises `ValueError` (incl. `json.JSONDecodeError`, `UnicodeDecodeError`)
    when it is not JSON at all."""
    brackets = body.count(b"[") + body.count(b"{")
    deep: dict[str, str] = {}
    if brackets > MAX_NESTING:
        body, deep = _cut_deep(body)
    decoder = _decoder()
    encoding = json.detect_encoding(body)
    try:
        # As `json.loads` reads bytes: UTF-8/16/32 told apart, surrogates let through.
        value = decoder.decode(body.decode(encoding, "surrogatepass"))
    except RecursionError:  # what the scan did not foresee (malformed input)
        raise ValueError("JSON nested too deeply") from None
    finally:
        marked, decoder.marked = decoder.marked, False
    if deep:
        value = _restore(value, deep)
    clean = (
        encoding == "utf-8"  # what Meta sends; anything else is walked, item by item
        and not marked
        and not deep
        and b"\\u0000" not in body
        and (b"\xed" not in body or _ENCODED_SURROGATE.search(body) is None)
        and (brackets <= MAX_DEPTH or _depth(value) <= MAX_DEPTH)
        and (_SURROGATE_ESCAPE.search(body) is None or _pairs_only(body))
    )
    return Loaded(value, clean)


class _Decoder(json.JSONDecoder):
    """`json`'s decoder whose hooks keep what a column cannot hold, and note that they did.

    Built once per thread (building one costs as much as parsing a small delivery);
    `marked` is read and reset after every parse."""

    def __init__(self) -> None:
        super().__init__(parse_int=self._number, parse_constant=self._constant)
        self.marked = False

    def _number(self, digits: str) -> int | BigNumber:
        if len(digits.lstrip("-")) <= _MAX_INT_DIGITS:
            return int(digits)
        self.marked = True
        return BigNumber(digits)

    def _constant(self, token: str) -> NonFinite:
        self.marked = True
        return NonFinite(token)


_local = threading.local()


def _decoder() -> _Decoder:
    decoder: _Decoder | None = getattr(_local, "decoder", None)
    if decoder is None:
        decoder = _local.decoder = _Decoder()
    return decoder


def _pairs_only(body: bytes) -> bool:
    """No lone surrogate escape in `body`: escaped backslashes set aside first (`\\\\ud83d`
    is a backslash and text, not an escape), then every high-low pair, and nothing
    surrogate may be left."""
    rest = _SURROGATE_PAIR.sub(b"", body.replace(b"\\\\", b"__"))
    return _SURROGATE_ESCAPE.search(rest) is None


def _cut_deep(body: bytes) -> tuple[bytes, dict[str, str]]:
    """Replace every value opened at nesting level `MAX_NESTING` by a placeholder string."""
    depth, start, last = 0, -1, 0
    parts: list[bytes] = []
    kept: dict[str, str] = {}
    for token in _TOKENS.finditer(body):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            depth += 1
            if depth == MAX_NESTING + 1 and start < 0:
                start = token.start()
        elif char in (b"]", b"}"):
            if depth == MAX_NESTING + 1 and start >= 0:
                key = f"\x00deep{len(kept)}\x00"
                kept[key] = body[start : token.end()].decode("utf-8", "replace")
                parts += [body[last:start], json.dumps(key).encode()]
                last, start = token.end(), -1
            depth -= 1
    if not kept:
        return body, {}
    parts.append(body[last:])
    return b"".join(parts), kept


def _restore(value: Any, deep: dict[str, str]) -> Any:
    if isinstance(value, str) and value in deep:
        return Deep(deep[value])
    if isinstance(value, list):
        return [_restore(v, deep) for v in value]
    if isinstance(value, dict):
        return {k: _restore(v, deep) for k, v in value.items()}
    return value


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (the value may be up to `MAX_NESTING` deep)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level + 1)
            stack.extend(
                (v, level + 1) for v in (node.values() if isinstance(node, dict) else node)
            )
    return deepest


def has_marks(value: Any) -> bool:
    """True when `value` holds a `Marked` value anywhere (iteratively)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, Marked):
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def exact_dumps(value: Any) -> str:
    """JSON text for `value`, ASCII only (every other character escaped, lone surrogates
    and U+0000 included), marked values written back as they came."""
    if isinstance(value, Marked):
        return str(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}:{exact_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(exact_dumps(v) for v in value) + "]"
    return json.dumps(value, allow_nan=True)
