"""Signing in to the console from a test, and reading what its pages carry."""

from __future__ import annotations

import re

import httpx

CONSOLE_TOKEN = "test-console-token-0123456789"
CONSOLE_SESSION_SECRET = "test-console-session-secret-0123456789"
# Both, always: a test must not lean on a development default its APP_ENV may not grant.
CONSOLE_ENV = {"CONSOLE_TOKEN": CONSOLE_TOKEN, "CONSOLE_SESSION_SECRET": CONSOLE_SESSION_SECRET}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the page's forms (they all carry the session's one)."""
    found = _CSRF.search(html)
    assert found, "the page has no form with a csrf_token"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, name: str = "Alice Operator") -> str:
    """Open the login form, sign in as `name`; the signed-in page's CSRF token."""
    login = await client.get("/console")
    assert login.status_code == 200, login.text
    response = await client.post(
        "/console/login",
        data={"csrf_token": csrf_of(login.text), "name": name, "token": CONSOLE_TOKEN},
    )
    assert response.status_code == 303, response.text
    page = await client.get("/console")
    assert f"signed in as <strong>{name}</strong>" in page.text
    return csrf_of(page.text)
