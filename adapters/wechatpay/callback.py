"""Verifying WeChat Pay notifications (支付通知 / 退款通知) before anything in them is believed:

1. the headers are there and `Wechatpay-Timestamp` is within ±`window_s` of now;
2. `Wechatpay-Serial` names a platform certificate (an unknown serial fetches the list once more);
3. `Wechatpay-Signature` verifies over `timestamp\\nnonce\\nbody\\n` with that certificate;
4. `Wechatpay-Nonce` was never seen inside the window (Redis `SET NX` with a TTL beyond it), so a
   captured delivery cannot be played again; WeChat's own retries are signed afresh;
5. the `resource` decrypts (AEAD_AES_256_GCM, APIv3 key) — a tampered ciphertext fails here.

Each refusal names its reason (for the audit record); nothing is changed by a refusal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

import msgspec
from redis.asyncio import Redis

from adapters.errors import ProblemError
from adapters.wechatpay import crypto
from adapters.wechatpay.client import PlatformCerts
from adapters.wechatpay.schemas import Notification

# What the OpenAPI document lists as required (WeChat Pay signs every notification with all four).
SIGNED_HEADERS = ("wechatpay-timestamp", "wechatpay-nonce", "wechatpay-signature", "wechatpay-serial")

Reason = Literal[
    "headers_missing",
    "stale_timestamp",
    "unknown_serial",
    "bad_signature",
    "replayed_nonce",
    "malformed",
    "decrypt_failed",
]


class NotificationRejected(ProblemError):
    status = 401
    code = "payment_notification_rejected"

    def __init__(self, reason: Reason, detail: str, *, zh: str) -> None:
        super().__init__(
            detail, status=400 if reason in ("malformed", "decrypt_failed") else 401, detail_zh=zh
        )
        self.reason = reason


class Verified(msgspec.Struct, frozen=True):
    notification_id: str
    event_type: str
    original_type: str
    plaintext: bytes


async def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    certs: PlatformCerts,
    apiv3_key: str,
    redis: Redis,
    window_s: int = 300,
    now: float | None = None,
) -> Verified:
    timestamp, nonce_, signature, serial = (headers.get(name, "") for name in SIGNED_HEADERS)
    serial = serial.upper()
    if not (timestamp.isdigit() and nonce_ and signature and serial) or len(nonce_) > 64:
        raise NotificationRejected(
            "headers_missing",
            "Wechatpay-* headers missing or malformed",
            zh="Wechatpay-* 请求头缺失或格式错误",
        )
    moment = time.time() if now is None else now
    if abs(moment - int(timestamp)) > window_s:
        raise NotificationRejected(
            "stale_timestamp",
            "Wechatpay-Timestamp outside the accepted window",
            zh="Wechatpay-Timestamp 超出允许范围",
        )
    public = await certs.get(serial)
    if public is None:
        raise NotificationRejected(
            "unknown_serial", "no platform certificate with that serial", zh="没有该序列号的平台证书"
        )
    if not crypto.verify(public, crypto.answer_message(timestamp, nonce_, body), signature):
        raise NotificationRejected("bad_signature", "the signature does not verify", zh="签名验证未通过")
    # Only a correctly signed delivery may use up a nonce (a forger cannot burn real ones).
    fresh = await redis.set(f"sx:wxpay:nonce:{nonce_}", timestamp, nx=True, ex=2 * window_s + 60)
    if not fresh:
        raise NotificationRejected("replayed_nonce", "this nonce was already used", zh="该随机串已被使用")
    try:
        doc = msgspec.json.decode(body, type=Notification)
    except msgspec.DecodeError:
        raise NotificationRejected(
            "malformed", "not a WeChat Pay notification", zh="不是微信支付通知"
        ) from None
    res = doc.resource
    if res.algorithm != "AEAD_AES_256_GCM":
        raise NotificationRejected("malformed", "unknown resource algorithm", zh="未知的资源加密算法")
    try:
        plaintext = crypto.decrypt(apiv3_key, res.nonce, res.ciphertext, res.associated_data)
    except crypto.DecryptFailed:
        raise NotificationRejected(
            "decrypt_failed", "the resource does not decrypt", zh="资源无法解密"
        ) from None
    return Verified(
        notification_id=doc.id,
        event_type=doc.event_type,
        original_type=res.original_type,
        plaintext=plaintext,
    )
