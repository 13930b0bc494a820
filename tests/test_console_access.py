"""Who may open the console, and what every console response carries.

Without `CONSOLE_TOKEN` the console does not exist (404 everywhere, as for any
unknown route). With it: a login form (token + the operator's name) starts a fresh
signed session; every POST needs the session's CSRF token and no foreign origin;
every response carries a strict CSP, `X-Frame-Options: DENY`, `Cache-Control: no-store`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from http.cookies import SimpleCookie

import httpx
import pytest
from starlette.applications import Starlette

from ingest.app import create_app
from ingest.config.settings import Settings
from ingest.console import ROUTES
from ingest.console.security import CSP, HEADERS
from storage.postgres import PostgresBackend
from tests.conftest import open_client
from tests.console import CONSOLE_ENV, CONSOLE_SESSION_SECRET, CONSOLE_TOKEN, csrf_of, sign_in

EXPECTED_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> Starlette:
    return create_app(make_settings(**CONSOLE_ENV))


@pytest.fixture
async def console(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(app):
        yield client


def cookie_of(response: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    return jar


async def test_without_console_token_every_console_route_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    """Whatever the method (a 405 would say the route exists), and with the headers of an
    unknown `/console/…` path."""
    unknown = await client.get("/console/no-such-route")
    for path, _, _, _ in ROUTES:
        for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
            response = await client.request(method, path.replace("{name}", "console.css"))
            assert (response.status_code, response.json()) == (404, unknown.json()), (method, path)
            assert response.headers.get("content-security-policy") == CSP


async def test_the_login_form_comes_with_an_anonymous_session_and_strict_cookie_flags(
    console: httpx.AsyncClient,
) -> None:
    response = await console.get("/console")
    assert response.status_code == 200
    assert 'name="token"' in response.text and 'name="name"' in response.text
    morsel = cookie_of(response)["ingest_console"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/console"
    assert not morsel["secure"]  # APP_ENV=test: plain http on loopback


async def test_in_production_the_session_cookie_is_secure_too(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        APP_ENV="production",
        CONSOLE_TOKEN=CONSOLE_TOKEN,
        CONSOLE_SESSION_SECRET="a-production-secret-of-at-least-32-characters",
    )
    async for client in open_client(create_app(settings)):
        morsel = cookie_of(await client.get("/console"))["ingest_console"]
        assert morsel["secure"] is True
        assert (morsel["httponly"], morsel["samesite"]) == (True, "strict")


async def test_a_wrong_token_is_refused_and_signs_no_one_in(console: httpx.AsyncClient) -> None:
    form = await console.get("/console")
    refused = await console.post(
        "/console/login",
        data={"csrf_token": csrf_of(form.text), "name": "mallory", "token": "guess"},
    )
    assert refused.status_code == 403
    assert "not the console" in refused.text
    assert (await console.get("/console/pulse")).status_code == 303


async def test_signing_in_starts_a_fresh_session_without_secrets_in_the_cookie(
    console: httpx.AsyncClient,
) -> None:
    before = (await console.get("/console")).cookies["ingest_console"]
    await sign_in(console, "Alice Operator")
    after = console.cookies["ingest_console"]
    payload = json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))
    assert set(payload) == {"sid", "name"}
    assert payload["name"] == "Alice Operator"
    assert (
        payload["sid"] != json.loads(base64.urlsafe_b64decode(before.split(".")[0] + "=="))["sid"]
    )
    assert CONSOLE_TOKEN not in after and CONSOLE_SESSION_SECRET not in after


async def test_a_forged_cookie_is_a_stranger(console: httpx.AsyncClient) -> None:
    await sign_in(console)
    signed = console.cookies["ingest_console"]
    body = base64.urlsafe_b64encode(b'{"sid":"x","name":"root"}').decode().rstrip("=")
    console.cookies.set("ingest_console", body + "." + signed.split(".", 1)[1], path="/console")
    assert (await console.get("/console/pulse")).status_code == 303


async def test_changing_the_token_signs_everyone_out(
    make_settings: Callable[..., Settings],
) -> None:
    async for old in open_client(create_app(make_settings(**CONSOLE_ENV))):
        await sign_in(old)
        cookie = old.cookies["ingest_console"]
    rotated = make_settings(**{**CONSOLE_ENV, "CONSOLE_TOKEN": CONSOLE_TOKEN + "-rotated"})
    async for new in open_client(create_app(rotated)):
        new.cookies.set("ingest_console", cookie, path="/console")
        assert (await new.get("/console/pulse")).status_code == 303


async def test_every_post_needs_the_session_csrf_token(
    app: Starlette, console: httpx.AsyncClient
) -> None:
    csrf = await sign_in(console)
    activate = {"action": "activate", "mode": "hold", "reason": "drill"}
    missing = await console.post("/console/kill-switch", data=activate)
    wrong = await console.post("/console/kill-switch", data={**activate, "csrf_token": "x" * 43})
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "CSRF" in missing.text
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        other_csrf = await sign_in(other, "Bob")
    stolen = await console.post("/console/kill-switch", data={**activate, "csrf_token": other_csrf})
    assert stolen.status_code == 403
    ok = await console.post("/console/kill-switch", data={**activate, "csrf_token": csrf})
    assert ok.status_code == 200
    assert "ON · hold" in (await console.get("/console/pulse")).text


async def test_a_post_from_another_site_is_refused_even_with_the_token(
    console: httpx.AsyncClient,
) -> None:
    csrf = await sign_in(console)
    form = {"action": "deactivate", "csrf_token": csrf}
    foreign = await console.post(
        "/console/kill-switch", data=form, headers={"Origin": "https://evil.example"}
    )
    null = await console.post("/console/kill-switch", data=form, headers={"Origin": "null"})
    cross = await console.post(
        "/console/kill-switch", data=form, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert [foreign.status_code, null.status_code, cross.status_code] == [403, 403, 403]
    own = await console.post(
        "/console/kill-switch", data=form, headers={"Origin": "http://testserver"}
    )
    assert own.status_code == 200


async def test_the_login_form_needs_its_csrf_token_too(console: httpx.AsyncClient) -> None:
    await console.get("/console")
    response = await console.post("/console/login", data={"name": "alice", "token": CONSOLE_TOKEN})
    assert response.status_code == 403


async def test_every_console_response_carries_the_security_headers(
    console: httpx.AsyncClient,
) -> None:
    assert CSP == EXPECTED_CSP
    responses = [await console.get("/console"), await console.get("/console/pulse")]
    csrf = await sign_in(console)
    for path, method, _, _ in ROUTES:
        concrete = path.replace("{name}", "htmx.min.js")
        if method == "GET":
            responses.append(await console.get(concrete, params={"at": "2026-12-02T10:00:00Z"}))
        else:
            responses.append(await console.post(concrete, data={}))  # refused: no CSRF
    responses.append(await console.post("/console/kill-switch/confirm", data={"csrf_token": csrf}))
    # Starlette's own answers under /console: another method, an unknown path
    responses.append(await console.get("/console/login"))
    responses.append(await console.put("/console"))
    responses.append(await console.get("/console/static/"))
    responses.append(await console.get("/console/static/htmx.vendored.toml"))
    assert {r.status_code for r in responses} >= {200, 303, 403, 404, 405, 422}
    for response in responses:
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (response.request.url, name)
    assert responses[-1].status_code == 404  # only the named assets are served


async def test_signing_out_clears_the_session(console: httpx.AsyncClient) -> None:
    csrf = await sign_in(console)
    response = await console.post("/console/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert cookie_of(response)["ingest_console"]["max-age"] == "0"
    assert (await console.get("/console/pulse")).status_code == 303
    assert 'name="token"' in (await console.get("/console")).text


async def test_a_copy_of_the_cookie_is_worth_nothing_after_signing_out(
    console: httpx.AsyncClient, backend: PostgresBackend
) -> None:
    csrf = await sign_in(console)
    copied = console.cookies["ingest_console"]
    assert (await console.post("/console/logout", data={"csrf_token": csrf})).status_code == 303
    console.cookies.set("ingest_console", copied, path="/console")
    assert (await console.get("/console/pulse")).status_code == 303
    assert 'name="token"' in (await console.get("/console")).text  # the login form again
    switch = {"csrf_token": csrf, "action": "activate", "mode": "direct", "reason": "stolen"}
    assert (await console.post("/console/kill-switch", data=switch)).status_code == 303
    assert await backend.pool.fetchval("select kill_switch from safety_state") is False
    kept = await backend.pool.fetchval("select sid_digest from ingest_console_signed_out")
    assert len(kept) == 64 and copied not in kept  # a digest, never the session
    console.cookies.clear()
    await sign_in(console)  # a new session is not affected
    assert (await console.get("/console/pulse")).status_code == 200


async def test_an_htmx_request_without_a_session_is_sent_to_the_login_page(
    console: httpx.AsyncClient,
) -> None:
    response = await console.get("/console/pulse", headers={"HX-Request": "true"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/console"
