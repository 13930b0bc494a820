"""Meta's data-deletion and deauthorize callbacks, and what every door to erasure shares.

Meta calls these for a user *of the app*: a business that connected its Instagram
account. The request is a form field `signed_request`, `<signature>.<payload>`, both
base64url; the signature is HMAC-SHA256 of the encoded payload with the app secret
(any of `META_APP_SECRETS`), and the payload says `{"algorithm": "HMAC-SHA256",
"issued_at", "user_id"}`. Anything else, or a request older than a day, is refused.

A data-deletion request erases every conversation stored under the account that user
connected (`ig_accounts` maps the app-scoped user id to the account) and answers a
status URL and a confirmation code; the same request twice erases once and returns the
same code; an unknown user is recorded as "no data held". The status URL shows the
request's state and nothing personal. Deauthorize records that the account
disconnected; it erases nothing by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
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

from contracts.http import BodyTooLarge, answer, read_body
from ingest.config.settings import Secret
from storage import Backend, StorageError

DELETION_PATH = "/api/meta/data-deletion"
DEAUTHORIZE_PATH = "/api/meta/deauthorize"
MAX_AGE_SECONDS = 86_400
_MAX_BODY = 16 * 1024

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


def _b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignedRequestMalformed("not base64url") from None


def verify_signed_request(
    value: str, app_secrets: Sequence[Secret], *, now: float | None = None
) -> SignedRequest:
    """The request's user and time, or the `SignedRequestError` that says what is wrong."""
    signature_b64, dot, payload_b64 = value.partition(".")
    if not dot or not signature_b64 or not payload_b64:
        raise SignedRequestMalformed("signed_request is not <signature>.<payload>")
    signature = _b64url(signature_b64)
    try:
        payload: Any = json.loads(_b64url(payload_b64))
    except ValueError:
        raise SignedRequestMalformed("the payload is not JSON") from None
    if not isinstance(payload, dict) or str(payload.get("algorithm", "")).upper() != "HMAC-SHA256":
        raise SignedRequestMalformed("the algorithm must be HMAC-SHA256")
    matched = False
    for secret in app_secrets:  # no early exit: time does not reveal which secret matched
        expected = hmac.new(secret.reveal().encode(), payload_b64.encode(), hashlib.sha256)
        matched |= hmac.compare_digest(expected.digest(), signature)
    if not matched:
        raise SignedRequestForged("the signature does not match")
    issued_at, user_id = payload.get("issued_at"), payload.get("user_id")
    if not isinstance(issued_at, int) or isinstance(issued_at, bool):
        raise SignedRequestMalformed("issued_at must be a number")
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or not str(user_id):
        raise SignedRequestMalformed("user_id is missing")
    age = (time.time() if now is None else now) - issued_at
    if age > MAX_AGE_SECONDS or age < -300:
        raise SignedRequestExpired("issued_at is more than a day from now")
    return SignedRequest(user_id=str(user_id), issued_at=issued_at)


_ANSWERS: tuple[tuple[type[SignedRequestError], int, str], ...] = (
    (SignedRequestMalformed, 400, "bad_request"),
    (SignedRequestForged, 401, "unauthorized"),
    (SignedRequestExpired, 401, "unauthorized"),
)


async def _signed(request: Request, app_secrets: Sequence[Secret]) -> tuple[SignedRequest, str]:
    """The verified request, and its text (the same request twice is the same text)."""
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
    return verify_signed_request(values[0], app_secrets), values[0]


def routes(backend: Backend, app_secrets: Sequence[Secret], base_url: str) -> list[BaseRoute]:
    async def data_deletion(request: Request) -> Response:
        try:
            signed, text = await _signed(request, app_secrets)
            key = hashlib.sha256(text.encode()).hexdigest()
            result = await backend.call(
                "ig_data_deletion",
                {"p_request_key": key, "p_app_user_id": signed.user_id,
                 "p_code": secrets.token_urlsafe(12)},
            )  # fmt: skip
        except SignedRequestError as exc:
            return _refuse(exc)
        except StorageError:
            return answer(503, "unavailable", "try again later")
        code = result["code"]
        log.info("data_deletion_request", state=result["status"], new=result["new"])
        return answer(
            200, "accepted", url=f"{base_url}{DELETION_PATH}/{code}", confirmation_code=code
        )

    async def deletion_status(request: Request) -> Response:
        code = request.path_params["code"]
        try:
            status = await backend.call("ig_data_deletion_status", {"p_code": code[:64]})
        except StorageError:
            return answer(503, "unavailable", "try again later")
        if status is None:
            return answer(404, "not_found", "no such data-deletion request")
        return answer(200, "found", **{k: v for k, v in status.items() if k != "status"},
                      state=status["status"])  # fmt: skip

    async def deauthorize(request: Request) -> Response:
        try:
            signed, _ = await _signed(request, app_secrets)
            result = await backend.call("ig_deauthorize", {"p_app_user_id": signed.user_id})
            await forget_tokens(backend, signed.user_id)
        except SignedRequestError as exc:
            return _refuse(exc)
        except StorageError:
            return answer(503, "unavailable", "try again later")
        log.warning("account_deauthorized", accounts=result["accounts"])
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
