"""schemathesis against the running app (real uvicorn, real PostgreSQL).

Signed runs: a hook signs every generated request the way its caller would (Meta
HMAC over the exact bytes, a QStash JWT for the path, the bearer token), so the
fuzzer gets past authentication into parsing and storage; every answer must be
documented, conform to the spec, and never be a server error. Unsigned runs: the
same operations without our signatures must all be refused (401/403).

`FUZZ_EXAMPLES` sets the generated examples per operation (CI: 100; `make fuzz`: 1000);
console pages and the unsigned runs take an eighth of it (at least 25): their inputs are
few and short, or refused before they are read. The signed runs also go through
schemathesis's coverage phase (every boundary of every schema: some 2,500 requests for an
operation carrying an event), in CI too; the unsigned runs in `make fuzz` only, and `make
test` sends them the undeclared methods that phase would have
(`test_undeclared_methods_are_refused_before_the_signature`).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.requests import ManagedCookiesSession

from contracts import EVENT_ADAPTER
from ingest.app import create_app
from ingest.config.env import settings_from_env
from storage.embedded import EmbeddedPostgres
from tests.conftest import BASE_ENV, INTERNAL_TOKEN, PUBLIC_BASE_URL, QSTASH_CURRENT_KEY, TEMPLATE
from tests.console import CONSOLE_ENV, sign_in
from tests.doubles.qstash import serve
from tests.doubles.qstash_signer import sign as qstash_sign
from tests.meta import sign as meta_sign

SCHEMA = schemathesis.openapi.from_path(Path(__file__).parent.parent / "openapi.yaml")
CI_EXAMPLES = 100
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", str(CI_EXAMPLES)))
SIGNED_BY: dict[str, str] = {
    "metaDelivery": "meta",
    "qstashDelivery": "qstash",
    "qstashFailure": "qstash",
    "internalIngest": "bearer",
}
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@pytest.fixture(scope="module")
def server(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """One app and one database for the whole module: examples share state, as in life."""
    name = "fuzz"
    url = pg_server.create_database(name, template=TEMPLATE)
    env = {**BASE_ENV, **CONSOLE_ENV, "DATABASE_URL": url}  # the app the spec describes
    app_settings = settings_from_env(env, env_file=None)
    try:
        with serve(create_app(app_settings), lifespan="on") as base_url:
            yield base_url
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def operator_cookie(server: str) -> str:
    """A signed-in console session, so that the console's parameters are reached (signed
    out, every console page is a redirect to the login form, whatever it is asked)."""

    async def sign_in_once() -> str:
        async with httpx.AsyncClient(base_url=server) as client:
            await sign_in(client, "Fuzz Operator")
            return "; ".join(f"{name}={value}" for name, value in client.cookies.items())

    return asyncio.run(sign_in_once())


@pytest.fixture(scope="module")
def http() -> Iterator[ManagedCookiesSession]:
    """One kept-alive connection for the module's thousands of requests, without a proxy
    lookup in the environment for each; schemathesis's own session kind, which forgets the
    cookies a response set once its request is done (as a session per request would)."""
    with ManagedCookiesSession() as session:
        session.trust_env = False
        yield session


def body_bytes(case: Any) -> bytes | None:
    if isinstance(case.body, NotSet):
        return None
    if isinstance(case.body, bytes):  # negative cases may send raw bytes
        return case.body
    return json.dumps(case.body).encode()


def signed(case: Any, operator_cookie: str) -> dict[str, Any]:
    """Transport kwargs with the signature the operation's real caller would send."""
    body = body_bytes(case)
    headers: dict[str, str] = {}
    if case.operation.path.startswith("/console"):
        headers["Cookie"] = operator_cookie
    kind = SIGNED_BY.get(case.operation.definition.raw.get("operationId", ""))
    path = case.operation.path
    if body is not None:
        headers["Content-Type"] = case.media_type or "application/json"
    if kind == "meta":
        headers["X-Hub-Signature-256"] = meta_sign(body or b"")
    elif kind == "qstash":
        headers["Upstash-Signature"] = qstash_sign(
            body or b"", PUBLIC_BASE_URL + path, QSTASH_CURRENT_KEY
        )
    elif kind == "bearer":
        headers["Authorization"] = f"Bearer {INTERNAL_TOKEN}"
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["data"] = body
    return kwargs


# QStash's documented "never retry" answer is 489, which schemathesis does not count as a
# rejection: for deliveries our own assertion below replaces its negative-data check. The
# failure callback records whatever QStash sends (fields read when well-typed), by design.
QSTASH_FACING = frozenset({"qstashDelivery", "qstashFailure"})
REJECTIONS = frozenset({400, 401, 405, 413, 415, 489})  # 405: undeclared methods


# What the consumer accepts as input: the validation-mode schema, without the computed dedup_id.
EVENT_VALIDATOR = jsonschema.Draft202012Validator(EVENT_ADAPTER.json_schema(mode="validation"))


def is_invalid_event(case: Any) -> bool:
    """A negative body that is invalid for a reason other than the read-only `dedup_id`
    (which the consumer recomputes and never reads, so a forged one is harmless)."""
    meta = case.meta
    if meta is None or not meta.is_negative_at(ParameterLocation.BODY):
        return False
    body = case.body
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "dedup_id"}
    return not EVENT_VALIDATOR.is_valid(body)


CONSOLE_PATHS = "^/console"


@SCHEMA.exclude(path_regex=CONSOLE_PATHS).parametrize()
@FUZZ_SETTINGS
def test_signed_requests_reach_the_app_and_never_break_it(
    case: Any, server: str, operator_cookie: str, http: ManagedCookiesSession
) -> None:
    check_signed(case, server, operator_cookie, http)


@SCHEMA.include(path_regex=CONSOLE_PATHS).parametrize()
@settings(FUZZ_SETTINGS, max_examples=max(EXAMPLES // 8, 25))
def test_the_signed_in_console_never_breaks(
    case: Any, server: str, operator_cookie: str, http: ManagedCookiesSession
) -> None:
    """Pages and forms with a handful of short parameters: fewer examples find as much."""
    check_signed(case, server, operator_cookie, http)


def check_signed(case: Any, server: str, operator_cookie: str, http: ManagedCookiesSession) -> None:
    kwargs = signed(case, operator_cookie)
    response = case.call(base_url=server, session=http, **kwargs)
    assert response.status_code < 500 or (
        response.status_code == 503 and case.operation.path == "/readyz"
    )
    excluded = [schemathesis.checks.ignored_auth, schemathesis.checks.positive_data_acceptance]
    if case.operation.definition.raw.get("operationId") in QSTASH_FACING:
        excluded.append(schemathesis.checks.negative_data_rejection)
        if case.operation.definition.raw["operationId"] == "qstashDelivery" and is_invalid_event(
            case
        ):
            assert response.status_code in REJECTIONS, response.text
    case.validate_response(response, headers=kwargs["headers"], excluded_checks=excluded)


# CI's size: generated requests only (the explicit phase is where schemathesis puts its
# coverage cases); `make fuzz`: every phase.
UNSIGNED_PHASES = [Phase.generate] if EXAMPLES <= CI_EXAMPLES else list(Phase)


@SCHEMA.include(operation_id=list(SIGNED_BY)).parametrize()
@settings(
    max_examples=max(EXAMPLES // 8, 25), deadline=None, suppress_health_check=list(HealthCheck),
    phases=UNSIGNED_PHASES,
)  # fmt: skip
def test_unsigned_requests_are_all_refused(
    case: Any, server: str, http: ManagedCookiesSession
) -> None:
    body = body_bytes(case)
    response = case.call(
        base_url=server, session=http,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + "0" * 64,
                 "Upstash-Signature": "e30.e30.", "Authorization": "Bearer nope"},
        **({"data": body} if body is not None else {}),
    )  # fmt: skip
    if case.method.upper() != case.operation.method.upper():
        assert response.status_code == 405  # an undeclared method, refused before anything else
    else:
        assert response.status_code in (401, 403), response.text


METHODS = ("get", "put", "post", "delete", "options", "patch", "trace")  # schemathesis's


@pytest.mark.parametrize("operation_id", sorted(SIGNED_BY))
def test_undeclared_methods_are_refused_before_the_signature(
    operation_id: str, server: str, http: ManagedCookiesSession
) -> None:
    """What the coverage phase of the unsigned runs sends to a signed route, in `make test`
    too: every method its path does not declare, unsigned, is 405."""
    (path,) = [
        path for path, item in SCHEMA.raw_schema["paths"].items()
        if any(op.get("operationId") == operation_id for op in item.values() if isinstance(op, dict))
    ]  # fmt: skip
    undeclared = [m for m in METHODS if m not in SCHEMA.raw_schema["paths"][path]]
    assert undeclared
    answers = {m: http.request(m, server + path, data=b"{}").status_code for m in undeclared}
    assert answers == dict.fromkeys(undeclared, 405)
