"""Shared steps for the appointment, case, rating, idempotency and ownership tests (no tests here).

Items and halls are picked from the sandbox's own item library (same database, schema
`sandbox`), so the tests follow whatever the catalogue seeds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import time
import uuid
import zlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec

from tests.auth_helpers import bearer

WEBHOOK_SECRET = "sandbox-case-webhook-secret"
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# A real 1x1 PNG: signature, IHDR, IDAT, IEND (uploads read the structure, see bff/uploads/service.py).
PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    + _chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    + _chunk(b"IEND", b"")
)
# A JPEG's structure: SOI, an APP0 (JFIF) segment, start of scan, a few coded bytes, EOI.
JPEG = (
    b"\xff\xd8"
    + b"\xff\xe0"
    + struct.pack(">H", 16)
    + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + b"\xff\xda"
    + struct.pack(">H", 8)
    + b"\x01\x01\x00\x00\x3f\x00"
    + b"\x12\x34\x56"
    + b"\xff\xd9"
)


def key() -> str:
    return uuid.uuid4().hex


def auth(who: dict[str, Any], idem: str | None = None, **extra: str) -> dict[str, str]:
    headers = {**bearer(who), **extra}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return headers


async def bookable_item(
    db: asyncpg.Connection, *, online: bool = True, main_only: bool = False
) -> dict[str, str]:
    """An item that the province's hall takes appointments for (and that can be applied for online).

    Picked at random among many, so tests sharing the session's sandbox do not fill each other's
    slots (a slot takes 4 people by default)."""
    row = await db.fetchrow(
        """
        SELECT e.catalog_code, e.region_code, e.body -> 'halls' -> 0 ->> 'id' AS hall_id
        FROM sandbox.catalogue_entries e
        WHERE e.region_code = '430000' AND e.status = 'active' AND (e.body ->> 'is_schedule')::boolean
          AND (e.body ->> 'is_online')::boolean = $1 AND jsonb_array_length(e.body -> 'halls') > 0
          AND (e.body ->> 'promise_day')::int BETWEEN 2 AND 20
          AND (NOT $2 OR e.body ->> 'parent_code' IS NULL)
        ORDER BY random() LIMIT 1
        """,
        online,
        main_only,
    )
    assert row is not None
    return {"code": row["catalog_code"], "region": row["region_code"], "hall": row["hall_id"]}


async def unbookable_item(db: asyncpg.Connection) -> str:
    code = await db.fetchval(
        """
        SELECT catalog_code FROM sandbox.catalogue_entries
        WHERE region_code = '430000' AND status = 'active' AND NOT (body ->> 'is_schedule')::boolean
        ORDER BY catalog_code LIMIT 1
        """
    )
    assert code is not None
    return str(code)


async def open_days(
    client: httpx.AsyncClient, who: dict[str, Any], item: dict[str, str], count: int = 1
) -> list[dict[str, Any]]:
    """The first `count` days with open slots (each the slots view's answer)."""
    found: list[dict[str, Any]] = []
    day = today_china()
    for offset in range(1, 21):
        candidate = day + timedelta(days=offset)
        response = await client.get(
            f"/api/v1/halls/{item['hall']}/slots",
            params={"item": item["code"], "date": candidate.isoformat()},
            headers=auth(who),
        )
        if response.status_code == 422 and response.json()["code"] == "date_out_of_window":
            continue
        assert response.status_code == 200, response.text
        if response.json()["slots"]:
            found.append(response.json())
            if len(found) == count:
                return found
    raise AssertionError("no open days found")


async def first_slot(
    client: httpx.AsyncClient, who: dict[str, Any], item: dict[str, str], day_index: int = 0
) -> str:
    days = await open_days(client, who, item, day_index + 1)
    return str(days[day_index]["slots"][0]["slotId"])


async def book(client: httpx.AsyncClient, who: dict[str, Any], slot_id: str) -> dict[str, Any]:
    response = await client.post("/api/v1/appointments", json={"slotId": slot_id}, headers=auth(who, key()))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def upload(
    client: httpx.AsyncClient, who: dict[str, Any], content: bytes = PDF, name: str = "申请表.pdf"
) -> str:
    media = "application/pdf" if content.startswith(b"%PDF") else "image/png"
    response = await client.post(
        "/api/v1/uploads",
        params={"name": name},
        content=content,
        headers=auth(who, key(), **{"Content-Type": media}),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def application(client: httpx.AsyncClient, who: dict[str, Any], item: dict[str, str]) -> dict[str, Any]:
    """A valid application body for the item: e-licences where the guide allows, uploads otherwise."""
    guide = await client.get(f"/api/v1/items/{item['code']}", params={"region": item["region"]})
    assert guide.status_code == 200, guide.text
    materials: list[dict[str, Any]] = []
    for material in guide.json()["item"]["materials"]:
        if not material["required"]:
            continue
        if material["elicenceType"]:
            materials.append(
                {
                    "name": material["name"],
                    "elicence": {"type": material["elicenceType"], "number": "EL" + key()[:10]},
                }
            )
        else:
            materials.append({"name": material["name"], "uploadId": await upload(client, who)})
    return {
        "itemCode": item["code"],
        "regionCode": item["region"],
        "form": {"contactName": "张三", "contactPhone": "13800138000"},
        "materials": materials,
    }


async def apply(client: httpx.AsyncClient, who: dict[str, Any], item: dict[str, str]) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/cases", json=await application(client, who, item), headers=auth(who, key())
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def advance(sandbox: httpx.AsyncClient, project_no: str, action: str, **fields: Any) -> dict[str, Any]:
    response = await sandbox.post(
        f"/cases/_control/applications/{project_no}/advance", json={"action": action, **fields}
    )
    assert response.status_code == 201, response.text
    event: dict[str, Any] = response.json()
    return event


def signed(
    event: dict[str, Any], *, secret: str = WEBHOOK_SECRET, at: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode(event)
    stamp = str(at if at is not None else int(time.time()))
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-Case-Timestamp": stamp,
        "X-Case-Signature": f"sha256={signature}",
    }


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed(event)
    return await client.post("/api/v1/case-events", content=body, headers=headers)


async def conclude(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any], case: dict[str, Any]
) -> None:
    """Accept and conclude a case, delivering each event by webhook as the case system would."""
    project_no = case["case"]["projectNo"]
    for action, fields in (
        ("accept", {}),
        ("step", {"step": "承办", "opinion": "材料齐全"}),
        ("conclude", {"resultCode": "0"}),
    ):
        renamed = {("result_code" if k == "resultCode" else k): v for k, v in fields.items()}
        event = await advance(sandbox, project_no, action, **renamed)
        assert (await deliver(client, event)).status_code == 200


def today_china() -> date:
    return (datetime.now(UTC) + timedelta(hours=8)).date()


def upstream_urls(sandbox_url: str) -> dict[str, Any]:
    """Settings that point the journey's upstreams at the session's sandbox."""
    return {
        "booking_url": f"{sandbox_url}/booking",
        "cases_url": f"{sandbox_url}/cases",
        "ratings_url": f"{sandbox_url}/ratings",
        # Logins are many in these tests; the per-IP login limit is tested elsewhere.
        "auth_rate_per_ip": 100_000,
        "auth_rate_per_subject": 100_000,
    }


def serve_env(services: Any, sandbox_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment of a `bff.cli serve` process on `port`, wired to the session's services and
    sandbox; `extra` adds or overrides variables."""
    env = dict(os.environ)
    env.update(
        {
            "ENV": "test",
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
            "REDIS_CLUSTER": "true" if services.cluster else "false",
            "API_PORT": str(port),
            "CATALOGUE_URL": f"{sandbox_url}/catalogue",
            "WECHAT_URL": f"{sandbox_url}/wechat",
            "IDP_URL": f"{sandbox_url}/idp",
            "BOOKING_URL": f"{sandbox_url}/booking",
            "CASES_URL": f"{sandbox_url}/cases",
            "RATINGS_URL": f"{sandbox_url}/ratings",
            "ELICENCE_URL": f"{sandbox_url}/elicence",
            "HOTLINE_URL": f"{sandbox_url}/hotline",
            # The session's earlier tests logged many residents in from this address.
            "AUTH_RATE_PER_IP": "100000",
            "AUTH_RATE_PER_SUBJECT": "100000",
            **extra,
        }
    )
    return env
