"""Tokens encrypted at rest: AES-GCM (`cryptography`), a key id in every ciphertext.

A ciphertext is `v1.<key id>.<nonce + sealed token, urlsafe base64>`; the key id is the
first 8 hex digits of the key's SHA-256, so it names a key without revealing it and
whatever order the keys are listed in. The account id is the associated data: a
ciphertext copied onto another account's row does not decrypt. The first key of
`TOKEN_ENCRYPTION_KEY` encrypts; every listed key decrypts (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
NONCE_BYTES = 12


class TokenUnreadable(Exception):
    """A ciphertext no configured key opens (a key removed too early, or tampering)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


class TokenCipher:
    def __init__(self, keys: tuple[bytes, ...]) -> None:
        if not keys:
            raise ValueError("TokenCipher needs at least one key")
        self._keys = {key_id(k): AESGCM(k) for k in keys}
        self.current = key_id(keys[0])

    def __repr__(self) -> str:
        return f"TokenCipher(current={self.current}, keys={len(self._keys)})"

    def encrypt(self, token: str, account_id: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current].encrypt(nonce, token.encode(), account_id.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{VERSION}.{self.current}.{body}"

    def decrypt(self, ciphertext: str, account_id: str) -> str:
        version, _, rest = ciphertext.partition(".")
        kid, _, body = rest.partition(".")
        aead = self._keys.get(kid)
        if version != VERSION or aead is None:
            raise TokenUnreadable(f"no configured key has id {kid or '?'}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            token = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], account_id.encode())
        except (InvalidTag, ValueError):
            raise TokenUnreadable(f"the token of {account_id} does not decrypt") from None
        return token.decode()

    def key_of(self, ciphertext: str) -> str:
        return ciphertext.split(".")[1] if ciphertext.count(".") >= 2 else "?"
