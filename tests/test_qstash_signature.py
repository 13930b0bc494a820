"""Upstash-Signature: our signer and verifier against both official Receivers.

Every case is checked by our verifier, by qstash-py's `Receiver` and by the
TypeScript `Receiver` of `@upstash/qstash` (run with node), and all three must agree.
The pinned package comes from the repository's package.json (`npm ci`, run by
`make test`); tests/node/verify.mjs finds it in the repository's node_modules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from qstash import Receiver
from qstash.errors import SignatureError as QStashSignatureError

from consumers import signature
from tests.conftest import QSTASH_CURRENT_KEY, QSTASH_NEXT_KEY
from tests.doubles.qstash_signer import sign
from tests.supabase_cli import node_tool

URL = "https://ingest.example.test/api/qstash/instagram-ingestion"
BODY = b'{"v":1,"kind":"message","text":"caf\\u00e9 \xf0\x9f\x92\x99"}'
KEYS = (QSTASH_CURRENT_KEY, QSTASH_NEXT_KEY)
NODE_DIR = Path(__file__).parent / "node"


@dataclass(frozen=True)
class Case:
    name: str
    token: str
    body: bytes = BODY
    url: str = URL
    valid: bool = False


def corpus() -> list[Case]:
    now = time.time()
    return [
        Case("current key", sign(BODY, URL, QSTASH_CURRENT_KEY), valid=True),
        Case("next key", sign(BODY, URL, QSTASH_NEXT_KEY), valid=True),
        Case(
            "unpadded body hash",
            sign(BODY, URL, QSTASH_CURRENT_KEY, body_claim=signature.body_hash(BODY)),
            valid=True,
        ),
        Case("wrong key", sign(BODY, URL, "sig_someone_else")),
        Case("tampered body", sign(BODY, URL, QSTASH_CURRENT_KEY), body=BODY + b" "),
        Case("wrong sub", sign(BODY, URL + "x", QSTASH_CURRENT_KEY)),
        Case(
            "other path sub",
            sign(BODY, URL.replace("instagram-ingestion", "failures"), QSTASH_CURRENT_KEY),
        ),
        Case("expired", sign(BODY, URL, QSTASH_CURRENT_KEY, now=now - 400)),
        Case("future nbf beyond leeway", sign(BODY, URL, QSTASH_CURRENT_KEY, now=now + 3600)),
        Case("wrong issuer", sign(BODY, URL, QSTASH_CURRENT_KEY, issuer="NotUpstash")),
        Case("garbage", "not.a.jwt"),
    ]


def ours(case: Case, leeway: float = 0) -> bool:
    try:
        signature.verify(case.token, case.body, keys=KEYS, url=case.url, leeway=leeway)
    except signature.SignatureError:
        return False
    return True


def qstash_py(case: Case) -> bool:
    receiver = Receiver(current_signing_key=KEYS[0], next_signing_key=KEYS[1])
    try:
        receiver.verify(signature=case.token, body=case.body.decode(), url=case.url)
    except QStashSignatureError:
        return False
    return True


def typescript(cases: list[Case]) -> list[bool]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the TypeScript Receiver check needs Node.js")
    node_tool("@upstash/qstash/package.json", "@upstash/qstash (npm package)")
    lines = "".join(
        json.dumps({"token": c.token, "body": c.body.decode(), "url": c.url,
                    "current": KEYS[0], "next": KEYS[1]}) + "\n"
        for c in cases
    )  # fmt: skip
    result = subprocess.run(
        [node, "verify.mjs"], cwd=NODE_DIR, input=lines, text=True,
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return [line == "ok" for line in result.stdout.splitlines()]


# Tokens are signed when a test runs, not when pytest collects: a long suite (or a busy
# machine) must not see a token expire between the two.
@pytest.mark.parametrize("name", [case.name for case in corpus()])
def test_our_verifier_and_qstash_py_agree_with_the_expectation(name: str) -> None:
    case = next(c for c in corpus() if c.name == name)
    assert ours(case) is case.valid
    assert qstash_py(case) is case.valid


def test_typescript_receiver_agrees_on_every_case() -> None:
    cases = corpus()
    assert typescript(cases) == [case.valid for case in cases]


def test_clock_skew_within_leeway_is_accepted_beyond_is_refused() -> None:
    now = time.time()
    ahead_20 = Case("qstash clock 20 s ahead", sign(BODY, URL, KEYS[0], now=now + 20))
    ahead_60 = Case("qstash clock 60 s ahead", sign(BODY, URL, KEYS[0], now=now + 60))
    assert ours(ahead_20, leeway=30)
    assert not ours(ahead_60, leeway=30)
    assert not qstash_py(ahead_20)  # qstash-py ignores clock_tolerance: why we verify ourselves


def failures() -> dict[str, tuple[Case, type[Exception]]]:
    now = time.time()
    return {
        "missing": (Case("missing", ""), signature.SignatureMissing),
        "wrong key": (Case("wrong key", sign(BODY, URL, "sig_x")), signature.SignatureWrongKey),
        "expired": (
            Case("expired", sign(BODY, URL, KEYS[0], now=now - 400)),
            signature.SignatureExpired,
        ),
        "future": (
            Case("future", sign(BODY, URL, KEYS[0], now=now + 3600)),
            signature.SignatureNotYetValid,
        ),
        "sub": (Case("sub", sign(BODY, URL + "/x", KEYS[0])), signature.SignatureWrongSubject),
        "body": (
            Case("body", sign(BODY, URL, KEYS[0], body_claim="AAAA")),
            signature.SignatureBodyMismatch,
        ),
        "garbage": (Case("garbage", "a.b.c"), signature.SignatureMalformed),
    }


@pytest.mark.parametrize("name", list(failures()))
def test_each_failure_says_what_is_wrong(name: str) -> None:
    case, error = failures()[name]
    with pytest.raises(error):
        signature.verify(case.token, case.body, keys=KEYS, url=case.url, leeway=30)


def test_no_configured_key_refuses_everything() -> None:
    token = sign(BODY, URL, KEYS[0])
    with pytest.raises(signature.SignatureWrongKey):
        signature.verify(token, BODY, keys=(), url=URL, leeway=30)
