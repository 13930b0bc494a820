"""X-Hub-Signature-256: one failure mode per test, plus known answers."""

from __future__ import annotations

import json

import pytest

from ingest.config.settings import Secret
from ingest.edge.signature import (
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    expected_signature,
    verify,
)
from tests.conftest import META_SECRET, META_SECRET_2
from tests.meta import sign, wire_bytes

SECRETS = (Secret(META_SECRET), Secret(META_SECRET_2))
BODY = b'{"object":"instagram","entry":[]}'


def test_known_answer_vector_computed_with_openssl() -> None:
    # printf '%s' '{"object":"instagram","entry":[]}' | openssl dgst -sha256 -hmac "It's a Secret to Everybody"
    assert expected_signature(BODY, "It's a Secret to Everybody") == (
        "sha256=cce4033066905ccc8ba2c92e1c31b80485b050b846600324c55bbde60f8050c3"
    )


def test_escaped_unicode_known_answer_is_over_the_wire_bytes() -> None:
    body = b'{"text":"caf\\u00e9 \\ud83d\\udc99 a\\/b"}'
    header = "sha256=f2fd516c87b7b75bf8cda12409d04f81e22389e4c5ac93454c4c0b1b9fbe648a"
    verify(body, header, SECRETS)


def test_valid_signature_passes() -> None:
    verify(BODY, sign(BODY), SECRETS)


def test_second_secret_is_accepted_during_rotation() -> None:
    verify(BODY, sign(BODY, META_SECRET_2), SECRETS)


def test_missing_header_is_rejected() -> None:
    with pytest.raises(SignatureMissing):
        verify(BODY, None, SECRETS)


def test_empty_header_is_rejected() -> None:
    with pytest.raises(SignatureMissing):
        verify(BODY, "", SECRETS)


@pytest.mark.parametrize("prefix", ["sha1=", "SHA256=", "sha512=", ""])
def test_wrong_prefix_is_rejected(prefix: str) -> None:
    digest = sign(BODY).removeprefix("sha256=")
    with pytest.raises(SignatureMalformed):
        verify(BODY, prefix + digest, SECRETS)


@pytest.mark.parametrize("cut", [1, 2, 63])
def test_wrong_length_is_rejected(cut: int) -> None:
    with pytest.raises(SignatureMalformed):
        verify(BODY, sign(BODY)[:-cut], SECRETS)


def test_too_long_is_rejected() -> None:
    with pytest.raises(SignatureMalformed):
        verify(BODY, sign(BODY) + "00", SECRETS)


def test_non_hex_digest_is_rejected() -> None:
    with pytest.raises(SignatureMalformed):
        verify(BODY, "sha256=" + "z" * 64, SECRETS)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureMismatch):
        verify(BODY, sign(BODY, "not-our-secret"), SECRETS)


def test_tampered_body_is_rejected() -> None:
    header = sign(BODY)
    with pytest.raises(SignatureMismatch):
        verify(BODY.replace(b"instagram", b"instagrem"), header, SECRETS)


def test_unicode_body_must_be_verified_as_sent_not_reserialised() -> None:
    payload = {"entry": [{"text": "Hi! 💙 café https://x.example/a"}]}
    wire = wire_bytes(payload)
    assert b"\\ud83d\\udc99" in wire and b"\\/" in wire
    header = sign(wire)
    verify(wire, header, SECRETS)
    reserialised = json.dumps(json.loads(wire), ensure_ascii=False).encode()
    with pytest.raises(SignatureMismatch):
        verify(reserialised, header, SECRETS)


def test_uppercase_hex_digest_is_accepted() -> None:
    verify(BODY, "sha256=" + sign(BODY).removeprefix("sha256=").upper(), SECRETS)
