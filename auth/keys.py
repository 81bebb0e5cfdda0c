"""The access-token signing key ring: every key is published in the JWKS, one signs.

Rotation: add the next key to `AUTH_SIGNING_KEYS` (it is published at once), wait longer than any
client caches the JWKS, then point `AUTH_ACTIVE_KID` at it; drop the old key once the longest access
token signed with it has expired (10 minutes).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey
    public: PublicKey

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.public, ec.EllipticCurvePublicKey):
            jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(self.public, as_dict=True)
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk


def _key(kid: str, private: PrivateKey) -> SigningKey:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            raise ValueError(f"signing key {kid}: only P-256 EC keys (ES256) are accepted")
        return SigningKey(kid, "ES256", private, private.public_key())
    return SigningKey(kid, "EdDSA", private, private.public_key())


class KeyRing:
    def __init__(self, keys: list[SigningKey], active_kid: str) -> None:
        self.by_kid = {key.kid: key for key in keys}
        if active_kid not in self.by_kid:
            raise ValueError(f"active signing key {active_kid!r} is not among the configured keys")
        self.active = self.by_kid[active_kid]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.by_kid.values()]}


def parse_entries(entries: list[str], active_kid: str) -> KeyRing:
    keys: list[SigningKey] = []
    for entry in entries:
        kid, sep, material = entry.partition(":")
        if not sep:
            raise ValueError("each signing key is `kid:<base64url PKCS#8 DER>`")
        der = base64.urlsafe_b64decode(material + "=" * (-len(material) % 4))
        private = serialization.load_der_private_key(der, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError(f"signing key {kid}: use an EC P-256 or Ed25519 key")
        keys.append(_key(kid, private))
    return KeyRing(keys, active_kid)


def dev_ring(seed: str) -> KeyRing:
    """Two deterministic keys (so every replica and test agrees): `dev-1` signs, `dev-2` is the next
    key, published ahead of use as rotation requires."""
    keys = []
    for kid in ("dev-1", "dev-2"):
        scalar = int.from_bytes(hashlib.sha256(f"{seed}|jwt|{kid}".encode()).digest()) % (_P256_ORDER - 1) + 1
        keys.append(_key(kid, ec.derive_private_key(scalar, ec.SECP256R1())))
    return KeyRing(keys, "dev-1")


def export_entry(kid: str, private: PrivateKey) -> str:
    """The `kid:<base64url DER>` form of a key, for settings (used by ops tooling and tests)."""
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return f"{kid}:{base64.urlsafe_b64encode(der).decode().rstrip('=')}"
