"""The consumer's error table: what happened → what we answer → what QStash does.

One table, as data, so that the endpoint, the docs and the tests read the same
thing. QStash retries every non-2xx answer, 4xx included; the documented way to
say "never retry" is 489 with `Upstash-NonRetryable-Error: true` (the message goes
straight to the DLQ). `CONSUMER_PERMANENT_STATUS=400` swaps 489 for a plain 400,
which QStash retries (3 times) before the DLQ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError
from starlette.responses import Response

from consumers.signature import SignatureError
from contracts import describe_error
from contracts.http import BodyTooLarge, answer
from storage import DataRejected, StorageUnavailable

PERMANENT: Final = -1  # placeholder status: the configured permanent status (489 or 400)
NON_RETRYABLE_HEADER = "Upstash-NonRetryable-Error"


class MalformedRequest(Exception):
    """Not even shaped like a delivery (no body, not JSON where JSON is needed)."""


class UnsupportedMediaType(Exception):
    pass


class ContractViolation(Exception):
    """A signed body that is not a v1 contract event: retrying cannot fix it."""


@dataclass(frozen=True, slots=True)
class Rule:
    failure: type[BaseException]
    status: int  # an HTTP status, or PERMANENT
    word: str
    qstash_does: str


TABLE: Final[tuple[Rule, ...]] = (
    Rule(SignatureError, 401, "unauthorized", "retries, then DLQ"),
    Rule(UnsupportedMediaType, 415, "unsupported_media_type", "retries, then DLQ"),
    Rule(BodyTooLarge, 413, "too_large", "retries, then DLQ"),
    Rule(MalformedRequest, 400, "bad_request", "retries, then DLQ"),
    Rule(ContractViolation, PERMANENT, "rejected", "no retry, straight to DLQ"),
    Rule(ValidationError, PERMANENT, "rejected", "no retry, straight to DLQ"),
    Rule(DataRejected, PERMANENT, "rejected", "no retry, straight to DLQ"),
    Rule(StorageUnavailable, 500, "retry", "retries with backoff"),
    Rule(TimeoutError, 500, "retry", "retries with backoff"),
)
FALLBACK: Final = Rule(Exception, 500, "retry", "retries with backoff")


def rule_for(exc: BaseException) -> Rule:
    for rule in TABLE:
        if isinstance(exc, rule.failure):
            return rule
    return FALLBACK


def respond(exc: BaseException, permanent_status: int) -> Response:
    """The answer for a failure, per the table."""
    rule = rule_for(exc)
    headers: dict[str, str] = {}
    status = rule.status
    if status == PERMANENT:
        status = permanent_status
        if status == 489:
            headers[NON_RETRYABLE_HEADER] = "true"
    retry_after = getattr(exc, "retry_after", None)
    if status == 500 and isinstance(retry_after, int | float) and retry_after > 0:
        headers["Retry-After"] = str(math.ceil(retry_after))
    return answer(status, rule.word, _describe(exc), headers=headers)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        return describe_error(exc)
    return f"{type(exc).__name__}: {exc}"[:300]
