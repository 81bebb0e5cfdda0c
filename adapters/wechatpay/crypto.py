"""WeChat Pay v3 cryptography with `cryptography` directly: RSA-SHA256 PKCS#1 v1.5 signatures (our
requests, the mini-program/App pay signatures) and verification (the platform's answers and
notifications), AEAD_AES_256_GCM decryption under the APIv3 key. Pure functions, no I/O."""

from __future__ import annotations

import base64
import secrets
import string
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "WECHATPAY2-SHA256-RSA2048"
DEV_KEY_FILE = Path(__file__).with_name("dev_merchant_key.pem")
_ALPHABET = string.ascii_letters + string.digits


class DecryptFailed(Exception):
    """The ciphertext does not open under the APIv3 key (tampered, or another key)."""


def nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the merchant key must be an RSA private key")
    return key


def sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(public: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        public.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_of(cert_pem: bytes) -> rsa.RSAPublicKey:
    public = x509.load_pem_x509_certificate(cert_pem).public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise ValueError("platform certificates carry RSA keys")
    return public


def decrypt(apiv3_key: str, nonce_: str, ciphertext: str, associated_data: str) -> bytes:
    try:
        return AESGCM(apiv3_key.encode()).decrypt(
            nonce_.encode(), base64.b64decode(ciphertext), associated_data.encode()
        )
    except (InvalidTag, ValueError) as exc:
        raise DecryptFailed("the resource does not decrypt") from exc


def authorization(
    key: rsa.RSAPrivateKey, mchid: str, serial: str, method: str, target: str, body: bytes, timestamp: int
) -> str:
    """The `Authorization` header over `METHOD\\nTARGET\\nTIMESTAMP\\nNONCE\\nBODY\\n`."""
    nonce_str = nonce()
    message = f"{method}\n{target}\n{timestamp}\n{nonce_str}\n{body.decode()}\n"
    signature = sign(key, message)
    return (
        f'{SCHEME} mchid="{mchid}",nonce_str="{nonce_str}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial}"'
    )


def answer_message(timestamp: str, nonce_: str, body: bytes) -> bytes:
    return timestamp.encode() + b"\n" + nonce_.encode() + b"\n" + body + b"\n"
