"""The key ring: provider API keys encrypted at rest with AES-256-GCM.

LLM_ENCRYPTION_KEYS lists base64 keys of 32 bytes; the first encrypts, every one
decrypts, so a new key can be put first, `manage.py rotate_llm_keys` run, and the
old key removed. A key's id is derived from the key itself (the first 8 hex digits
of its SHA-256), so operators only handle the keys. The associated data binds a
ciphertext to its owner, its provider and where it is sent (base URL and API version):
copied into another row, or left in a row whose address was changed by any path that
did not seal the key again (the admin, SQL), it fails to decrypt. Where a key goes is
part of the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class BadKeyConfig(ValueError):
    """LLM_ENCRYPTION_KEYS holds something that is not a usable key."""


class DecryptError(Exception):
    """A stored key cannot be read back: the person has to enter it again."""


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    ciphertext: str  # base64(nonce || ciphertext-with-tag)


def key_id_for(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def associated_data(user_id: int, kind: str, destination: str) -> bytes:
    return f"coppertone:provider-key:v2:{user_id}:{kind}:{destination}".encode()


def legacy_associated_data(user_id: int, kind: str) -> bytes:
    """What keys were sealed with before the destination was bound (migration 0004)."""
    return f"coppertone:provider-key:{user_id}:{kind}".encode()


class KeyRing:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise BadKeyConfig("no key is configured")
        self._keys = {key_id_for(k): AESGCM(k) for k in keys}
        self.primary_id = key_id_for(keys[0])

    @classmethod
    def from_strings(cls, encoded: list[str]) -> KeyRing:
        keys = []
        for position, text in enumerate(encoded, start=1):
            # Accept both the URL-safe and the standard alphabet, padded or not.
            text = text.strip().replace("-", "+").replace("_", "/")
            try:
                key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise BadKeyConfig(f"key {position} is not base64") from None
            if len(key) != 32:
                raise BadKeyConfig(f"key {position} is {len(key)} bytes; AES-256 needs 32")
            keys.append(key)
        return cls(keys)

    @classmethod
    def from_settings(cls) -> KeyRing:
        from django.conf import settings

        return cls.from_strings(settings.LLM_ENCRYPTION_KEYS)

    def encrypt(self, plaintext: str, aad: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._keys[self.primary_id].encrypt(nonce, plaintext.encode(), aad)
        return Sealed(self.primary_id, base64.b64encode(blob).decode())

    def decrypt(self, sealed: Sealed, aad: bytes) -> str:
        aes = self._keys.get(sealed.key_id)
        if aes is None:
            raise DecryptError("it was encrypted with a key this server no longer has")
        try:
            blob = base64.b64decode(sealed.ciphertext, validate=True)
            plaintext = aes.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except (InvalidTag, binascii.Error, ValueError):
            raise DecryptError("the stored value does not match its owner or was altered") from None
        return plaintext.decode()

    def is_current(self, sealed: Sealed) -> bool:
        return sealed.key_id == self.primary_id
