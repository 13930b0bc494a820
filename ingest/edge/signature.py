"""`X-Hub-Signature-256`: HMAC-SHA256 of the raw request bytes with a Meta app secret.

Verified on the bytes as received, before any parsing: Meta escapes non-ASCII as
``\\uXXXX`` and ``/`` as ``\\/``, so re-serialised JSON would not match. Several
secrets may be configured (rotation, or both the Instagram and the Meta app
secret); any one of them matching is enough. Only ``sha256=`` is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ingest.config.settings import Secret

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class SignatureError(Exception):
    """The delivery is not provably from Meta; the message says why (never the secret)."""


class SignatureMissing(SignatureError):
    pass


class SignatureMalformed(SignatureError):
    pass


class SignatureMismatch(SignatureError):
    pass


def expected_signature(body: bytes, secret: str) -> str:
    """The header value Meta sends for `body` signed with `secret`."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Sequence[Secret]) -> None:
    """Raise a `SignatureError` unless `header` signs `body` under one of `secrets`."""
    if not header:
        raise SignatureMissing(f"{HEADER} header is missing")
    if not header.startswith(_PREFIX):
        raise SignatureMalformed(f"{HEADER} must start with {_PREFIX!r}")
    digest = header[len(_PREFIX) :]
    if len(digest) != 64 or not _HEX_DIGITS.issuperset(digest):
        raise SignatureMalformed(f"{HEADER} must carry 64 hex digits")
    given = bytes.fromhex(digest)
    matched = False
    for secret in secrets:  # no early exit: time does not reveal which secret matched
        computed = hmac.digest(secret.reveal().encode(), body, "sha256")  # OpenSSL, one call
        matched |= hmac.compare_digest(computed, given)
    if not matched:
        raise SignatureMismatch(f"{HEADER} does not match the body")
