"""Control API of the push gateway: install and uninstall apps (device tokens), force failures on
sends, deliveries and receipts, and list what was received, accepted and delivered."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Router, delete, get, post, put
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import Body, FromPath, QueryParameter

from sandbox.pushgw.routes import STATE, STATUS_OF, TOKEN_SHAPES


class DeviceIn(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    platform: Literal["ios", "android", "harmony"]
    person_ref: str
    token: str | None = None  # None: the gateway mints one of the platform's shape
    app_version: str | None = None


class Install(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    devices: list[DeviceIn]


class SendFailures(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    code: Literal[
        "UNREGISTERED", "INVALID_TOKEN", "QUOTA_EXCEEDED", "PAYLOAD_TOO_LARGE", "INTERNAL", "UNAVAILABLE"
    ]
    count: int = 1


class DeliveryFailures(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    reason: str = "DEVICE_OFFLINE_TTL_EXPIRED"
    count: int = 1


class ReceiptDrops(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    count: int = 1


class Config(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    per_second: int = 0
    delivery_delay_ms: int = 20


def _mint(platform: str) -> str:
    return (
        secrets.token_hex(32) if platform == "ios" else f"{platform[:2].upper()}{secrets.token_urlsafe(48)}"
    )


@post("/devices", status_code=201)
async def install(db: NamedDependency[asyncpg.Pool], data: Annotated[Install, Body()]) -> dict[str, Any]:
    """The app installed on a phone and registered with the vendor: its token becomes valid (again)."""
    tokens = []
    async with db.acquire() as conn, conn.transaction():
        for device in data.devices:
            token = device.token or _mint(device.platform)
            if not TOKEN_SHAPES[device.platform].fullmatch(token):
                raise ValidationException(f"not a {device.platform} token shape")
            await conn.execute(
                """
                INSERT INTO sandbox.pushgw_devices (token, platform, person_ref, app_version) VALUES ($1, $2, $3, $4)
                ON CONFLICT (token) DO UPDATE SET platform = excluded.platform, person_ref = excluded.person_ref,
                    app_version = excluded.app_version, installed_at = now(), unregistered_at = NULL
                """,
                token,
                device.platform,
                device.person_ref,
                device.app_version,
            )
            tokens.append({"token": token, "platform": device.platform, "personRef": device.person_ref})
    return {"devices": tokens}


@delete("/devices/{token:str}", status_code=200)
async def uninstall(db: NamedDependency[asyncpg.Pool], token: FromPath[str]) -> dict[str, str]:
    """The app uninstalled (or the vendor rotated the token): sends to it are UNREGISTERED from now."""
    done = await db.execute(
        "UPDATE sandbox.pushgw_devices SET unregistered_at = now() WHERE token = $1 AND unregistered_at IS NULL",
        token,
    )
    if done.endswith(" 0"):
        raise NotFoundException("no such registered token")
    return {"token": token, "state": "unregistered"}


@post("/failures", status_code=200)
async def force_send_failures(data: Annotated[SendFailures, Body()]) -> dict[str, Any]:
    """The next `count` new sends are refused with `code` (its usual status; 429/503 with Retry-After)."""
    STATE.forced.extend([data.code] * data.count)
    return {"forced": [{"code": c, "status": STATUS_OF[c]} for c in STATE.forced]}


@post("/delivery-failures", status_code=200)
async def force_delivery_failures(data: Annotated[DeliveryFailures, Body()]) -> dict[str, Any]:
    """The next `count` accepted messages end `failed` with `reason` instead of `delivered`."""
    STATE.delivery_failures.extend([data.reason] * data.count)
    return {"deliveryFailures": list(STATE.delivery_failures)}


@post("/receipt-drops", status_code=200)
async def drop_receipts(data: Annotated[ReceiptDrops, Body()]) -> dict[str, int]:
    """The next `count` receipts are never sent (recorded as attempt 0, outcome `dropped`)."""
    STATE.receipt_drops += data.count
    return {"receiptDrops": STATE.receipt_drops}


@put("/config")
async def set_config(data: Annotated[Config, Body()]) -> dict[str, int]:
    STATE.per_second = data.per_second
    STATE.delivery_delay_ms = data.delivery_delay_ms
    return {"perSecond": STATE.per_second, "deliveryDelayMs": STATE.delivery_delay_ms}


@get("/messages")
async def messages(
    db: NamedDependency[asyncpg.Pool],
    token: Annotated[str | None, QueryParameter()] = None,
    request_id: Annotated[str | None, QueryParameter(query="requestId")] = None,
) -> list[dict[str, Any]]:
    """Every message accepted (one per request_id), with its delivery state and receipt attempts."""
    rows = await db.fetch(
        """
        SELECT m.*, coalesce(
            (SELECT jsonb_agg(jsonb_build_object('attempt', r.attempt, 'outcome', r.outcome) ORDER BY r.id)
             FROM sandbox.pushgw_receipts r WHERE r.message_id = m.message_id), '[]'::jsonb) AS receipts
        FROM sandbox.pushgw_messages m
        WHERE ($1::text IS NULL OR m.token = $1) AND ($2::text IS NULL OR m.request_id = $2)
        ORDER BY m.accepted_at, m.message_id
        """,
        token,
        request_id,
    )
    return [
        {
            "messageId": r["message_id"],
            "requestId": r["request_id"],
            "token": r["token"],
            "platform": r["platform"],
            "title": r["title"],
            "body": r["body"],
            "data": r["data"],
            "callbackUrl": r["callback_url"],
            "status": r["status"],
            "reason": r["reason"],
            "acceptedAt": r["accepted_at"].isoformat(),
            "finishedAt": r["finished_at"].isoformat() if r["finished_at"] else None,
            "receipts": r["receipts"],
        }
        for r in rows
    ]


@get("/requests")
async def requests(
    db: NamedDependency[asyncpg.Pool],
    token: Annotated[str | None, QueryParameter()] = None,
    request_id: Annotated[str | None, QueryParameter(query="requestId")] = None,
) -> list[dict[str, Any]]:
    """Every send request received, oldest first, with how it was answered."""
    rows = await db.fetch(
        """
        SELECT * FROM sandbox.pushgw_requests
        WHERE ($1::text IS NULL OR token = $1) AND ($2::text IS NULL OR request_id = $2) ORDER BY id
        """,
        token,
        request_id,
    )
    return [
        {
            "requestId": r["request_id"],
            "token": r["token"],
            "status": r["status"],
            "code": r["code"],
            "messageId": r["message_id"],
            "duplicate": r["duplicate"],
            "receivedAt": r["received_at"].isoformat(),
        }
        for r in rows
    ]


@delete("/")
async def reset(db: NamedDependency[asyncpg.Pool]) -> None:
    """Forget devices, requests, messages, receipts and every forced failure."""
    STATE.reset()
    await db.execute(
        """
        TRUNCATE sandbox.pushgw_devices, sandbox.pushgw_requests, sandbox.pushgw_messages,
            sandbox.pushgw_receipts
        """
    )


router = Router(
    path="/_control/pushgw",
    route_handlers=[
        install,
        uninstall,
        force_send_failures,
        force_delivery_failures,
        drop_receipts,
        set_config,
        messages,
        requests,
        reset,
    ],
)
