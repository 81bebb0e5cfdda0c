"""Personal data at rest: authenticated encryption plus a keyed blind index for look-up.

The cipher is pluggable (AES-256-GCM or SM4-GCM, GB/T 39786 asks for the SM family in government
systems) and keys rotate by id: each ciphertext names the key that made it, so old rows stay readable
while new rows use the active key. The field name is bound in as associated data, so a ciphertext
copied from one column into another fails to decrypt instead of being read as the wrong thing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Literal, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

Algorithm = Literal["aes-gcm", "sm4-gcm"]
Field = Literal["name", "id_number", "phone", "session_key", "address", "text", "request", "application"]
_NONCE = 12
_TAG = 16
_ALG_BYTE: dict[Algorithm, int] = {"aes-gcm": 1, "sm4-gcm": 2}


class CryptoError(Exception):
    """A ciphertext could not be decrypted (wrong key, tampered, or a different field's value)."""


class _AEAD(Protocol):
    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...
    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...


class _AesGcm:
    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("aes-gcm keys are 16, 24 or 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, aad)

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(nonce, data, aad)


class _Sm4Gcm:
    """SM4 in GCM mode through `cryptography`'s Cipher API (it has no one-shot AEAD class for SM4)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("sm4-gcm keys are 16 bytes")
        self._key = key

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        encryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad)
        body = encryptor.update(data) + encryptor.finalize()
        return body + encryptor.tag

    def open(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        if len(data) < _TAG:
            raise InvalidTag
        decryptor = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, data[-_TAG:])).decryptor()
        decryptor.authenticate_additional_data(aad)
        return decryptor.update(data[:-_TAG]) + decryptor.finalize()


def _make(algorithm: Algorithm, key: bytes) -> _AEAD:
    return _AesGcm(key) if algorithm == "aes-gcm" else _Sm4Gcm(key)


def normalise(field: Field, value: str) -> str:
    """The form a value is indexed under: the same person must always hash to the same index."""
    value = value.strip()
    if field == "id_number":
        return value.upper()
    if field == "phone":
        return value.removeprefix("+86")
    return value


class PiiCrypto:
    """Encrypt/decrypt one field value; compute its blind index."""

    def __init__(
        self,
        algorithm: Algorithm,
        keys: dict[str, bytes],
        active_kid: str,
        index_key: bytes,
    ) -> None:
        if active_kid not in keys:
            raise ValueError(f"active personal-data key {active_kid!r} is not among the configured keys")
        if len(index_key) < 16:
            raise ValueError("the blind-index key must be at least 16 bytes")
        self.algorithm = algorithm
        self._ciphers = {kid: _make(algorithm, key) for kid, key in keys.items()}
        self._active = active_kid
        self._index_key = index_key
        # SM3 keeps the whole chain in the SM family when SM4 is chosen.
        self._digest = "sm3" if algorithm == "sm4-gcm" else "sha256"

    def encrypt(self, field: Field, value: str) -> bytes:
        kid = self._active.encode()
        nonce = os.urandom(_NONCE)
        header = bytes([_ALG_BYTE[self.algorithm], len(kid)]) + kid
        body = self._ciphers[self._active].seal(nonce, value.encode(), header + field.encode())
        return header + nonce + body

    def decrypt(self, field: Field, blob: bytes) -> str:
        try:
            alg, kid_len = blob[0], blob[1]
            header = blob[: 2 + kid_len]
            kid = header[2:].decode()
            nonce = blob[2 + kid_len : 2 + kid_len + _NONCE]
            body = blob[2 + kid_len + _NONCE :]
            if alg != _ALG_BYTE[self.algorithm] or kid not in self._ciphers:
                raise CryptoError("ciphertext made with an unknown key or algorithm")
            return self._ciphers[kid].open(nonce, body, header + field.encode()).decode()
        except (IndexError, UnicodeDecodeError, InvalidTag) as exc:
            raise CryptoError("ciphertext does not decrypt") from exc

    def blind_index(self, field: Field, value: str) -> bytes:
        message = field.encode() + b"\x00" + normalise(field, value).encode()
        return hmac.new(self._index_key, message, self._digest).digest()


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_keys(entries: list[str]) -> dict[str, bytes]:
    """`kid:<base64>` entries -> {kid: key}."""
    keys: dict[str, bytes] = {}
    for entry in entries:
        kid, sep, material = entry.partition(":")
        if not sep or not kid or not material:
            raise ValueError("each key entry is `kid:<base64>`")
        keys[kid] = _b64(material)
    return keys


def from_settings(
    algorithm: Algorithm, key_entries: list[str], active: str, index_key: str, dev_seed: str
) -> PiiCrypto:
    """Real keys when configured (required in prod, see Settings); otherwise keys derived from the dev seed."""
    if key_entries:
        return PiiCrypto(algorithm, parse_keys(key_entries), active, _b64(index_key))
    size = 16 if algorithm == "sm4-gcm" else 32
    derived = hashlib.sha256(f"{dev_seed}|pii|dev-1".encode()).digest()[:size]
    index = hashlib.sha256(f"{dev_seed}|pii-index".encode()).digest()
    return PiiCrypto(algorithm, {"dev-1": derived}, "dev-1", index)
