"""Kiosk device trust: every kiosk request is signed with the device's own key.

The signature covers `METHOD \n PATH?QUERY \n sha256(body) hex \n timestamp \n nonce`. A request is
refused when a header is missing, the timestamp is more than the allowed skew away, the device is
unknown or revoked, the signature does not verify, or the nonce was seen before (nonces are kept
for twice the skew, so a replay can never fall between "too old" and "forgotten").

Algorithms are pluggable: Ed25519 is built in; an SM2 verifier (GB/T 32918 with SM3) registers with
`register_algorithm("sm2", ...)` once a vetted SM2 implementation is part of the deployment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Mapping

import asyncpg
import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from redis.asyncio import Redis

from adapters.errors import ProblemError

Verifier = Callable[[bytes, bytes, bytes], bool]  # (public_key, message, signature) -> ok
KeyCheck = Callable[[bytes], bool]

HEADER_ID = "x-kiosk-id"
HEADER_TS = "x-kiosk-timestamp"
HEADER_NONCE = "x-kiosk-nonce"
HEADER_SIG = "x-kiosk-signature"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_ID = re.compile(r"^[A-Za-z0-9_-]{3,64}$")
_CACHE_S = 60


def _ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _ed25519_key_ok(public_key: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        return False
    return True


ALGORITHMS: dict[str, tuple[Verifier, KeyCheck]] = {"ed25519": (_ed25519_verify, _ed25519_key_ok)}


def register_algorithm(name: str, verify: Verifier, key_ok: KeyCheck) -> None:
    ALGORITHMS[name] = (verify, key_ok)


class KioskRefused(ProblemError):
    status = 401

    def __init__(self, detail: str, code: str, status: int = 401, *, zh: str) -> None:
        super().__init__(detail, status=status, code=code, detail_zh=zh)


class Device(msgspec.Struct, frozen=True):
    id: str
    algorithm: str
    public_key: bytes
    active: bool


def canonical(method: str, path: str, body: bytes, timestamp: str, nonce: str) -> bytes:
    return "\n".join([method.upper(), path, hashlib.sha256(body).hexdigest(), timestamp, nonce]).encode()


def valid_kiosk_id(kiosk_id: str) -> bool:
    return bool(_ID.match(kiosk_id))


def _cache_key(kiosk_id: str) -> str:
    return f"sx:kiosk:dev:{kiosk_id}"


async def load_device(redis: Redis, pool: asyncpg.Pool, kiosk_id: str) -> Device | None:
    cached = await redis.get(_cache_key(kiosk_id))
    if cached is not None:
        return msgspec.msgpack.decode(cached.encode() if isinstance(cached, str) else cached, type=Device)
    row = await pool.fetchrow(
        "SELECT id, algorithm, public_key, status FROM bff.kiosks WHERE id = $1", kiosk_id
    )
    if row is None:
        return None
    device = Device(row["id"], row["algorithm"], bytes(row["public_key"]), row["status"] == "active")
    await redis.set(_cache_key(kiosk_id), msgspec.msgpack.encode(device), ex=_CACHE_S)
    return device


async def forget_device(redis: Redis, kiosk_id: str) -> None:
    await redis.delete(_cache_key(kiosk_id))


async def verify_request(
    redis: Redis,
    pool: asyncpg.Pool,
    *,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    skew_s: int,
    now: float | None = None,
) -> str:
    """Check a kiosk's signed request; returns the kiosk id or raises a 401/403 problem."""
    kiosk_id = headers.get(HEADER_ID, "")
    stamp = headers.get(HEADER_TS, "")
    nonce = headers.get(HEADER_NONCE, "")
    signature = headers.get(HEADER_SIG, "")
    if not (kiosk_id and stamp and nonce and signature):
        raise KioskRefused(
            "kiosk requests must be signed", "kiosk_signature_required", zh="自助终端的请求须签名"
        )
    if not valid_kiosk_id(kiosk_id) or not _NONCE.match(nonce) or not stamp.isdigit():
        raise KioskRefused(
            "the kiosk signature headers are malformed",
            "kiosk_signature_invalid",
            zh="自助终端签名请求头格式错误",
        )
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > skew_s:
        raise KioskRefused(
            "the kiosk request is too old or from the future",
            "kiosk_request_stale",
            zh="自助终端请求过旧或时间超前",
        )
    device = await load_device(redis, pool, kiosk_id)
    if device is None:
        raise KioskRefused("unknown kiosk", "kiosk_unknown", zh="未知的自助终端")
    if not device.active:
        raise KioskRefused(
            "this kiosk has been revoked", "kiosk_revoked", status=403, zh="该自助终端已被吊销"
        )
    algorithm = ALGORITHMS.get(device.algorithm)
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raw_signature = b""
    message = canonical(method, path, body, stamp, nonce)
    if algorithm is None or not raw_signature or not algorithm[0](device.public_key, message, raw_signature):
        raise KioskRefused(
            "the kiosk signature does not verify", "kiosk_signature_invalid", zh="自助终端签名验证未通过"
        )
    # Only a correctly signed request may spend a nonce: garbage cannot pre-burn a kiosk's nonces.
    fresh = await redis.set(f"sx:kiosk:nonce:{kiosk_id}:{nonce}", b"1", nx=True, ex=2 * skew_s)
    if not fresh:
        raise KioskRefused(
            "this kiosk request was already received", "kiosk_replay", zh="该自助终端请求已收到过"
        )
    return kiosk_id
