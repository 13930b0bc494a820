"""What a Graph API error answer says, read once for everyone who calls the Graph API.

Meta puts the error in the body, ``{"error": {"message", "type", "code", "error_subcode",
"is_transient", "fbtrace_id"}}``, often with HTTP 400 whatever the cause, so the code
decides and the status only helps
(https://developers.facebook.com/docs/graph-api/guides/error-handling).
Profile enrichment (consumers) and reconcile (ingest) both read Graph answers; this
module says what an answer means, and each caller decides what to do about it.

One code here is not confirmed by any source we could read: 9000001, which the issue
names for "message has been deleted" (a message older than a conversation's 20 newest).
So a message is also taken as unavailable when Meta's text says it was deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOKEN_CODES = frozenset({190, 102})  # token expired, revoked, invalid; session invalid
# App (4), user (17), Pages (32), custom (613) limits; Business Use Case limits 80001-80009
# (80001 Pages, 80002 Instagram, 80006 Messenger, others for ads and catalogues).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80010)})
TRANSIENT_CODES = frozenset({1, 2})  # "unknown" and "service": temporary, retry (smaller)
INVALID_PARAMETER = 100  # an unknown field, an object that does not exist or is not ours
MESSAGE_UNAVAILABLE = 9000001  # UNVERIFIED: see the module's docstring
_MAX_MESSAGE = 200


@dataclass
class GraphApiError(Exception):
    """A Graph API error answer. `message` is Meta's text, bounded (it never holds the
    token: Meta does not echo it, and we never put a URL into an error)."""

    status: int
    code: int | None = None
    transient: bool = False
    subcode: int | None = None
    message: str = ""

    def __str__(self) -> str:
        return f"graph error {self.status}/{self.code}"

    @property
    def token_invalid(self) -> bool:
        """Nothing will work with this token until someone replaces it."""
        return self.code in TOKEN_CODES

    @property
    def rate_limited(self) -> bool:
        return self.code in RATE_LIMIT_CODES or self.status == 429

    @property
    def temporary(self) -> bool:
        """Worth the same call again (smaller, or later): downtime, not a refusal."""
        return (
            self.transient
            or self.code in TRANSIENT_CODES
            or (self.status >= 500 and not self.token_invalid)
        )

    @property
    def retryable(self) -> bool:
        """Temporary or a rate limit: the call may succeed later."""
        return self.temporary or self.rate_limited

    @property
    def message_unavailable(self) -> bool:
        """A message whose details Meta no longer gives: beyond a conversation's 20 newest,
        or deleted. Recognised by the code and, since that code is unconfirmed, the text."""
        if self.code == MESSAGE_UNAVAILABLE:
            return True
        return "deleted" in self.message.lower() and not (self.token_invalid or self.rate_limited)

    @property
    def unknown_field(self) -> bool:
        """Code 100 about a field we asked for ("Unknown fields", "nonexisting field")."""
        return self.code == INVALID_PARAMETER and "field" in self.message.lower()

    @property
    def label(self) -> str:
        """A short, bounded name for counting (metrics, summaries): the code, or the status."""
        if self.code is not None:
            return str(self.code) if 0 <= self.code < 10**8 else "other"
        if self.status == 0:  # no answer we could read: the network, or a body not JSON
            return "network" if self.transient else "invalid_answer"
        return f"http_{self.status}"


def graph_error(status: int, body: Any) -> GraphApiError:
    """The error an answer with HTTP `status` and JSON `body` (or None) carries."""
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode, message = error.get("code"), error.get("error_subcode"), error.get("message")
    return GraphApiError(
        status=status,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        transient=error.get("is_transient") is True,
        subcode=subcode if isinstance(subcode, int) and not isinstance(subcode, bool) else None,
        message=message[:_MAX_MESSAGE] if isinstance(message, str) else "",
    )
