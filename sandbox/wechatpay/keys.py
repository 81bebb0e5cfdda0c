"""WeChat Pay v3 cryptography: merchant request signatures, platform answer signatures, AEAD_AES_256_GCM.

The platform's RSA 2048 key and self-made X.509 certificate live in `sandbox.wechatpay_platform_certs`
(made at the first start, rotated through the control API), so a restart keeps signing with a
certificate the merchant already downloaded.
"""

from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

DEV_MCHID = "1900000109"
DEV_APPID = "wx5a0d5a4d1e0c0001"
DEV_APIV3_KEY = "sandbox-apiv3-key-0123456789abcd"
DEV_CERT_PEM = (Path(__file__).parent / "dev_merchant_cert.pem").read_text(encoding="ascii")
SCHEME = "WECHATPAY2-SHA256-RSA2048"
CHINA = timezone(timedelta(hours=8))
_NONCE_ALPHABET = string.ascii_letters + string.digits


def nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def serial_of(cert: x509.Certificate) -> str:
    return format(cert.serial_number, "X")


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode("ascii"))


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa_verify(cert: x509.Certificate, message: bytes, signature: str) -> bool:
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        return False
    try:
        public.verify(
            base64.b64decode(signature, validate=True), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def aead_encrypt(apiv3_key: str, plaintext: bytes, associated_data: str) -> dict[str, str]:
    """WeChat's AEAD_AES_256_GCM: a 12-character nonce, base64(ciphertext || 16-byte tag)."""
    iv = nonce(12)
    ct = AESGCM(apiv3_key.encode()).encrypt(iv.encode(), plaintext, associated_data.encode())
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "nonce": iv,
        "associated_data": associated_data,
        "ciphertext": base64.b64encode(ct).decode("ascii"),
    }


def parse_authorization(header: str) -> dict[str, str] | None:
    scheme, _, rest = header.partition(" ")
    if scheme != SCHEME:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, value = part.strip().partition("=")
        if not eq or len(value) < 2 or value[0] != '"' or value[-1] != '"':
            return None
        fields[name] = value[1:-1]
    if not {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} <= fields.keys():
        return None
    return fields


@dataclass(frozen=True)
class PlatformCert:
    serial_no: str
    key: rsa.RSAPrivateKey
    cert_pem: str
    effective_time: datetime
    expire_time: datetime


def _make_cert() -> tuple[str, rsa.RSAPrivateKey, str, datetime, datetime]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    while True:  # WeChat's serials are 40 hex digits
        serial = secrets.randbits(159)
        if len(format(serial, "X")) == 40:
            break
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com (sandbox)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)"),
        ]
    )
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    end = start + timedelta(days=5 * 365)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return format(serial, "X"), key, pem, start, end


async def rotate(pool: asyncpg.Pool, old_valid: timedelta) -> str:
    serial, key, pem, start, end = _make_cert()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE sandbox.wechatpay_platform_certs SET retire_at = now() + $1 WHERE retire_at IS NULL",
            old_valid,
        )
        await conn.execute(
            """
            INSERT INTO sandbox.wechatpay_platform_certs (serial_no, key_pem, cert_pem, effective_time, expire_time)
            VALUES ($1, $2, $3, $4, $5)
            """,
            serial,
            key_pem,
            pem,
            start,
            end,
        )
    _CACHE.clear()
    return serial


_CACHE: dict[str, PlatformCert] = {}


async def current(pool: asyncpg.Pool) -> PlatformCert:
    """The certificate answers and notifications are signed with (the newest)."""
    row = await pool.fetchrow(
        "SELECT * FROM sandbox.wechatpay_platform_certs WHERE retire_at IS NULL ORDER BY created_at DESC LIMIT 1"
    )
    if row is None:
        await rotate(pool, timedelta(0))
        return await current(pool)
    cached = _CACHE.get(row["serial_no"])
    if cached is None:
        key = serialization.load_pem_private_key(row["key_pem"].encode("ascii"), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        cached = PlatformCert(
            row["serial_no"], key, row["cert_pem"], row["effective_time"], row["expire_time"]
        )
        _CACHE[row["serial_no"]] = cached
    return cached


async def listed(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """What `/v3/certificates` shows: every certificate not yet retired (old ones linger a while)."""
    return list(
        await pool.fetch(
            """
            SELECT * FROM sandbox.wechatpay_platform_certs
            WHERE (retire_at IS NULL OR retire_at > now()) AND expire_time > now()
            ORDER BY created_at
            """
        )
    )


async def sign_headers(pool: asyncpg.Pool, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    cert = await current(pool)
    ts = str(timestamp if timestamp is not None else int(datetime.now(UTC).timestamp()))
    nonce_str = nonce()
    message = f"{ts}\n{nonce_str}\n".encode() + body + b"\n"
    return {
        "Wechatpay-Serial": cert.serial_no,
        "Wechatpay-Signature": rsa_sign(cert.key, message),
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce_str,
        "Wechatpay-Signature-Type": SCHEME,
    }


async def seed_dev_merchant(pool: asyncpg.Pool) -> None:
    await pool.execute(
        """
        INSERT INTO sandbox.wechatpay_merchants (mchid, serial_no, cert_pem, apiv3_key, appids)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mchid) DO NOTHING
        """,
        DEV_MCHID,
        serial_of(load_cert(DEV_CERT_PEM)),
        DEV_CERT_PEM,
        DEV_APIV3_KEY,
        [DEV_APPID],
    )


def china_time(at: datetime) -> str:
    """RFC 3339 in China time, the way WeChat writes every time (`2026-01-02T10:00:00+08:00`)."""
    return at.astimezone(CHINA).isoformat(timespec="seconds")


def merchant_record(row: Any) -> dict[str, Any]:
    return {"mchid": row["mchid"], "serial_no": row["serial_no"], "appids": list(row["appids"])}
