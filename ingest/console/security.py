"""The headers every console response carries, and the same-origin check for POSTs.

The page runs no inline script or style at all (htmx from our own origin, CSS in a
file, charts as SVG markup with presentation attributes), so the policy can be
strict: nothing from anywhere else, no framing, no base URL, forms only to us.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    # not no-referrer: with it, browsers send `Origin: null` on our own form posts
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure(response: Response) -> Response:
    response.headers.update(HEADERS)
    return response


def same_origin(request: Request, also: str | None = None) -> bool:
    """False for a request another site made: a foreign (or `null`) `Origin`, or a
    `Sec-Fetch-Site` other than same-origin. Without either header (an old client) the
    CSRF token alone decides. `also`: the public URL, when a proxy rewrites the host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    allowed = {own.lower(), (also or own).rstrip("/").lower()}
    return origin.rstrip("/").lower() in allowed
