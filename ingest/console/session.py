"""Console sessions: a signed cookie that says who is signed in, and its CSRF token.

The cookie holds a random session ID and the name the operator typed, signed
(itsdangerous, HMAC-SHA1 over `CONSOLE_SESSION_SECRET`) and dated, never encrypted:
nothing secret goes in it. A visitor who has not signed in gets a session without a
name, so the login form has a CSRF token too; signing in starts a fresh session
(a new ID, so a session planted before the login is worth nothing).

The CSRF token is an HMAC of the session ID: bound to the session, never stored.
The signing salt includes a digest of `CONSOLE_TOKEN`, so changing the token signs
every operator out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ingest.config.settings import ConsoleAccess

COOKIE = "ingest_console"
PATH = "/console"
MAX_AGE_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    name: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.name is not None

    @property
    def digest(self) -> str:
        """What the database keeps of a signed-out session: never the ID itself."""
        return hashlib.sha256(self.sid.encode()).hexdigest()


class Sessions:
    """Reads, writes and checks console sessions; built once by the app factory."""

    def __init__(self, access: ConsoleAccess, *, secure: bool) -> None:
        self._token_digest = hashlib.sha256(access.token.reveal().encode()).digest()
        self._secret = access.session_secret.reveal().encode()
        salt = "ingest-console/" + hashlib.sha256(self._token_digest).hexdigest()[:16]
        self._serializer = URLSafeTimedSerializer(access.session_secret.reveal(), salt=salt)
        self._secure = secure

    def token_matches(self, given: str) -> bool:
        """Constant time whatever the lengths: the digests are compared, not the strings."""
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), self._token_digest)

    def read(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:  # forged, expired, or signed before a token change
            return None
        if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
            return None
        name = data.get("name")
        return Session(data["sid"], name if isinstance(name, str) else None)

    @staticmethod
    def new(name: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(18), name)

    def attach(self, response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self._serializer.dumps({"sid": session.sid, "name": session.name}),
            max_age=MAX_AGE_SECONDS,
            path=PATH,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path=PATH, secure=self._secure, httponly=True, samesite="strict"
        )

    def csrf_token(self, session: Session) -> str:
        digest = hmac.new(self._secret, b"csrf/" + session.sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def csrf_matches(self, session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(
            given.encode(), self.csrf_token(session).encode()
        )
