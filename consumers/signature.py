"""`Upstash-Signature`: a HS256 JWT over the raw body, verified like qstash-py's `Receiver`.

We verify with PyJWT directly because qstash-py 3.4's `Receiver` ignores its own
`clock_tolerance` (it lands in PyJWT's `options`, where it is not read), so a
consumer whose clock is a second behind QStash would refuse valid deliveries.

Checks, in order: signed by the current key, else the next key (rotation);
`iss` is "Upstash"; `exp`/`nbf`/`iat` within the leeway; `sub` equals the URL we
told QStash to call (configured, not the URL the request arrived on, which differs
behind ngrok or a proxy); `body` is base64url(SHA-256(raw body)), padded or not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from collections.abc import Sequence
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

# QStash issues its signing keys (e.g. 32 characters, "sig_" included); their length is
# not ours to choose, so PyJWT's per-verification length warning is only noise here.
warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

HEADER = "Upstash-Signature"
ISSUER = "Upstash"
_REQUIRED = ["iss", "sub", "exp", "nbf", "iat", "body"]


class SignatureError(Exception):
    """The delivery is not provably from QStash; the message says why."""


class SignatureMissing(SignatureError):
    pass


class SignatureMalformed(SignatureError):
    pass


class SignatureWrongKey(SignatureError):
    pass


class SignatureExpired(SignatureError):
    pass


class SignatureNotYetValid(SignatureError):
    pass


class SignatureWrongSubject(SignatureError):
    pass


class SignatureBodyMismatch(SignatureError):
    pass


def body_hash(body: bytes) -> str:
    """base64url(SHA-256(body)) without padding, as both SDKs compare it."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")


def verify(
    token: str | None, body: bytes, *, keys: Sequence[str], url: str, leeway: float
) -> dict[str, Any]:
    """Return the claims, or raise the `SignatureError` that says what is wrong."""
    if not token:
        raise SignatureMissing(f"{HEADER} header is missing")
    if not keys:
        raise SignatureWrongKey("no QStash signing key is configured")
    claims = _decode(token, keys, leeway)
    if claims["sub"] != url:
        raise SignatureWrongSubject("token was issued for another URL")
    claimed = str(claims["body"]).rstrip("=")
    if not hmac.compare_digest(claimed.encode(), body_hash(body).encode()):
        raise SignatureBodyMismatch("body does not match the signed hash")
    return claims


def _decode(token: str, keys: Sequence[str], leeway: float) -> dict[str, Any]:
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                issuer=ISSUER,
                leeway=leeway,
                options={"require": _REQUIRED, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            continue  # maybe signed with the next key
        except jwt.ExpiredSignatureError as exc:
            raise SignatureExpired("token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise SignatureNotYetValid("token is not valid yet") from exc
        except jwt.InvalidTokenError as exc:
            raise SignatureMalformed(f"invalid token: {exc}") from exc
        return claims
    raise SignatureWrongKey("token is not signed by a configured key")
