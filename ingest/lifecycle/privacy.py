"""Meta's data-deletion and deauthorize callbacks, and what every door to erasure shares.

Meta calls these for a user *of the app*: a business that connected its Instagram
account. The request is a form field `signed_request`, `<signature>.<payload>`, both
base64url; the signature is HMAC-SHA256 of the encoded payload with the app secret
(any of `META_APP_SECRETS`), and the payload says `{"algorithm": "HMAC-SHA256",
"issued_at", "user_id"}`. Anything else, or a request older than a day, is refused.
Both parts must be canonical base64url (no padding, no other alphabet, no spare bits):
a request is known by its signature's bytes, so one signed request is one request
however a copy of it is spelled. The signature is checked before any JSON is parsed.

A data-deletion request erases every conversation stored under the account that user
connected (`ig_accounts` maps the app-scoped user id to the account) and answers a
status URL and a confirmation code; the same request twice erases once and returns the
same code; an unknown user is recorded as "no data held". The status URL shows the
request's state and nothing personal. Deauthorize records that the account
disconnected; it erases nothing by itself, counts once per signed request, and is
ignored when it was issued before the business last reconnected (a replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from contracts.http import BodyTooLarge, answer, loads_bounded, read_body
from ingest.config.settings import Secret
from storage import Backend, DataRejected, StorageError

DELETION_PATH = "/api/meta/data-deletion"
DEAUTHORIZE_PATH = "/api/meta/deauthorize"
MAX_AGE_SECONDS = 86_400
_MAX_BODY = 16 * 1024
_MAX_PAYLOAD_DEPTH = 8  # Meta's payload is one flat object
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what `secrets.token_urlsafe` makes

log = structlog.get_logger(__name__)


class SignedRequestError(Exception):
    """Not a signed request from Meta for this app; the message says why."""


class SignedRequestMalformed(SignedRequestError):
    pass


class SignedRequestForged(SignedRequestError):
    pass


class SignedRequestExpired(SignedRequestError):
    pass


@dataclass(frozen=True, slots=True)
class SignedRequest:
    user_id: str
    issued_at: int
    key: str  # sha256 of the signature's bytes: what was signed, whatever its spelling


def _b64url(text: str) -> bytes:
    """Canonical base64url without padding, or `SignedRequestMalformed`: one byte string
    has one spelling, so no re-encoding of a signed request reads as another request."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise SignedRequestMalformed("not canonical base64url (A-Z a-z 0-9 - _, no padding)")
    decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != text.encode():
        raise SignedRequestMalformed("not canonical base64url (the last character has spare bits)")
    return decoded


def verify_signed_request(
    value: str, app_secrets: Sequence[Secret], *, now: float | None = None
) -> SignedRequest:
    """The request's user and time, or the `SignedRequestError` that says what is wrong.

    The signature is checked before the payload is parsed (it covers the payload), so
    nothing a stranger sends reaches the JSON parser; a signed payload is parsed with a
    depth bound all the same."""
    signature_b64, dot, payload_b64 = value.partition(".")
    if not dot or not signature_b64 or not payload_b64:
        raise SignedRequestMalformed("signed_request is not <signature>.<payload>")
    signature, payload_bytes = _b64url(signature_b64), _b64url(payload_b64)
    matched = False
    for secret in app_secrets:  # no early exit: time does not reveal which secret matched
        expected = hmac.new(secret.reveal().encode(), payload_b64.encode(), hashlib.sha256)
        matched |= hmac.compare_digest(expected.digest(), signature)
    if not matched:
        raise SignedRequestForged("the signature does not match")
    try:
        payload: Any = loads_bounded(payload_bytes, _MAX_PAYLOAD_DEPTH)
    except ValueError:
        raise SignedRequestMalformed("the payload is not JSON (or nests too deeply)") from None
    if not isinstance(payload, dict) or str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise SignedRequestMalformed("the algorithm must be HMAC-SHA256")
    issued_at, user_id = payload.get("issued_at"), payload.get("user_id")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise SignedRequestMalformed("issued_at must be a number")
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or not str(user_id):
        raise SignedRequestMalformed("user_id is missing")
    if not _printable(str(user_id)):
        raise SignedRequestMalformed("user_id holds a control character or a lone surrogate")
    age = (time.time() if now is None else now) - issued_at
    if age > MAX_AGE_SECONDS or age < -300:
        raise SignedRequestExpired("issued_at is more than a day from now")
    key = hashlib.sha256(signature).hexdigest()
    return SignedRequest(user_id=str(user_id), issued_at=issued_at, key=key)


def _printable(text: str) -> bool:
    """No C0/C1 control character, no U+0000, no lone surrogate (PostgreSQL text holds none)."""
    return not any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000 for c in text)


_ANSWERS: tuple[tuple[type[SignedRequestError], int, str], ...] = (
    (SignedRequestMalformed, 400, "bad_request"),
    (SignedRequestForged, 401, "unauthorized"),
    (SignedRequestExpired, 401, "unauthorized"),
)


async def _signed(request: Request, app_secrets: Sequence[Secret]) -> SignedRequest:
    """The verified request from the form."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise SignedRequestMalformed("Content-Type must be application/x-www-form-urlencoded")
    try:
        body = await read_body(request, _MAX_BODY)
        form = parse_qs(body.decode("ascii"), max_num_fields=8)
    except (BodyTooLarge, UnicodeDecodeError, ValueError):
        raise SignedRequestMalformed("not a form of signed_request") from None
    values = form.get("signed_request") or []
    if len(values) != 1:
        raise SignedRequestMalformed("signed_request is missing")
    return verify_signed_request(values[0], app_secrets)


def routes(backend: Backend, app_secrets: Sequence[Secret], base_url: str) -> list[BaseRoute]:
    async def data_deletion(request: Request) -> Response:
        try:
            signed = await _signed(request, app_secrets)
            result = await backend.call(
                "ig_data_deletion",
                {"p_request_key": signed.key, "p_app_user_id": signed.user_id,
                 "p_code": secrets.token_urlsafe(12)},
            )  # fmt: skip
        except SignedRequestError as exc:
            return _refuse(exc)
        except DataRejected:
            return answer(400, "bad_request", "the database cannot hold this request's user_id")
        except StorageError:
            return answer(503, "unavailable", "try again later")
        code = result["code"]
        log.info("data_deletion_request", state=result["status"], new=result["new"])
        return answer(
            200, "accepted", url=f"{base_url}{DELETION_PATH}/{code}", confirmation_code=code
        )

    async def deletion_status(request: Request) -> Response:
        code = request.path_params["code"]
        if not _CODE.fullmatch(code):  # no code we issued looks like this
            return answer(404, "not_found", "no such data-deletion request")
        try:
            status = await backend.call("ig_data_deletion_status", {"p_code": code})
        except StorageError:
            return answer(503, "unavailable", "try again later")
        if status is None:
            return answer(404, "not_found", "no such data-deletion request")
        return answer(200, "found", **{k: v for k, v in status.items() if k != "status"},
                      state=status["status"])  # fmt: skip

    async def deauthorize(request: Request) -> Response:
        try:
            signed = await _signed(request, app_secrets)
            result = await backend.call(
                "ig_deauthorize",
                {"p_app_user_id": signed.user_id, "p_request_key": signed.key,
                 "p_issued_at": signed.issued_at},
            )  # fmt: skip
            if result["accounts"]:  # a replay issued before the latest reconnect keeps the token
                await forget_tokens(backend, signed.user_id)
        except SignedRequestError as exc:
            return _refuse(exc)
        except DataRejected:
            return answer(400, "bad_request", "the database cannot hold this request's user_id")
        except StorageError:
            return answer(503, "unavailable", "try again later")
        log.warning("account_deauthorized", accounts=result["accounts"], new=result["new"])
        return answer(200, "recorded")

    return [
        Route(DELETION_PATH, data_deletion, methods=["POST"]),
        Route(DELETION_PATH + "/{code}", deletion_status, methods=["GET"]),
        Route(DEAUTHORIZE_PATH, deauthorize, methods=["POST"]),
    ]


async def forget_tokens(backend: Backend, app_user_id: str) -> None:
    """A deauthorized account is `deauthorized` and its stored token is deleted: nothing
    may call Meta for it until it is connected again (which sets `reconnected_at`)."""
    await backend.call("ig_account_forget_token", {"p_app_user_id": app_user_id})


def _refuse(exc: SignedRequestError) -> Response:
    for failure, http_status, word in _ANSWERS:
        if isinstance(exc, failure):
            log.warning("meta_callback_refused", http_status=http_status, reason=str(exc))
            return answer(http_status, word, str(exc))
    raise exc  # pragma: no cover - every SignedRequestError has an answer
