"""Shared steps for the address and delivery tests (no tests here)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import asyncpg
import httpx
import msgspec

from tests.auth_helpers import KNOWN_PII
from tests.test_journey_helpers import auth, key, upstream_urls

COURIER_SECRET = "sandbox-courier-secret"
_synced: set[str] = set()


def delivery_urls(sandbox_url: str) -> dict[str, Any]:
    return {**upstream_urls(sandbox_url), "courier_url": f"{sandbox_url}/courier"}


async def ensure_mirror(services: Any, sandbox_url: str) -> None:
    """Region codes are checked against the catalogue mirror: sync it once per session."""
    from tests.conftest import make_settings, sync_once

    if sandbox_url not in _synced:
        await sync_once(make_settings(services, sandbox_url))
        _synced.add(sandbox_url)


def fresh_phone() -> str:
    phone = "139" + f"{secrets.randbelow(10**8):08d}"
    KNOWN_PII.add(phone)  # the suite-end scan proves it never appears unmasked
    return phone


def address_body(phone: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "name": "王小明",
        "phone": phone or fresh_phone(),
        "address": "岳麓区麓山南路932号湖南大学7栋301",
        "regionCode": "430104",
        "label": "家",
        **fields,
    }


async def add_address(client: httpx.AsyncClient, who: dict[str, Any], **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/me/addresses", json=address_body(**fields), headers=auth(who, key())
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def mailable_item(db: asyncpg.Connection, *, mailable: bool = True) -> dict[str, str]:
    """An online item of the province whose result can (or cannot) be mailed."""
    row = await db.fetchrow(
        """
        SELECT e.catalog_code, e.region_code, e.body -> 'halls' -> 0 ->> 'id' AS hall_id
        FROM sandbox.catalogue_entries e
        WHERE e.region_code = '430000' AND e.status = 'active' AND (e.body ->> 'is_online')::boolean
          AND (e.body ->> 'is_express')::boolean = $1 AND jsonb_array_length(e.body -> 'halls') > 0
          AND (e.body ->> 'promise_day')::int BETWEEN 2 AND 20
        ORDER BY random() LIMIT 1
        """,
        mailable,
    )
    assert row is not None
    return {"code": row["catalog_code"], "region": row["region_code"], "hall": row["hall_id"]}


def courier_signed(
    event: dict[str, Any], *, secret: str = COURIER_SECRET, at: int | None = None, event_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """A callback exactly as the courier sends it (sandbox/courier/routes.py::deliver)."""
    body = msgspec.json.encode(event)
    stamp = str(at if at is not None else int(time.time()))
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-Courier-Event-Id": event_id or event["event_id"],
        "X-Courier-Timestamp": stamp,
        "X-Courier-Signature": f"sha256={signature}",
    }


async def courier_deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = courier_signed(event)
    return await client.post("/api/v1/deliveries/courier/notify", content=body, headers=headers)
