"""A courier (EMS-like): shipments from a hall to a resident, tracking, signed callbacks, a changes feed.

- `POST /courier/v1/shipments` (idempotent by `request_id`) → `{waybill_no, status: "created"}`.
- `GET /courier/v1/shipments/{waybill_no}`: status and every event with time and place.
- Callbacks to the shipment's `notify_url` for each change, signed like the case system's webhook
  (HMAC-SHA256 over `timestamp.body`, its own secret), retried a few times.
- `GET /courier/v1/changes?since=`: events by `seq`. A seq is taken from a one-row counter in the
  event's own transaction; its row lock is held until commit, so numbers become visible in order and
  a reader that has seen n never later finds a smaller number committed.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import asyncpg.pool
import msgspec
from litestar import Response, Router, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from sandbox.webhooks import SignedWebhooks

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
SECRET = os.environ.get("SANDBOX_COURIER_SECRET", "sandbox-courier-secret")
Status = Literal["created", "picked_up", "in_transit", "out_for_delivery", "delivered", "failed", "returned"]
# From each status, where an officer of the courier may move a shipment.
NEXT: dict[str, set[str]] = {
    "created": {"picked_up", "returned"},
    "picked_up": {"in_transit", "returned"},
    "in_transit": {"in_transit", "out_for_delivery", "returned"},
    "out_for_delivery": {"delivered", "failed", "returned"},
    "failed": {"out_for_delivery", "returned"},
    "delivered": set(),
    "returned": set(),
}
MAIN_LINE = {
    "created": "picked_up",
    "picked_up": "in_transit",
    "in_transit": "out_for_delivery",
    "failed": "out_for_delivery",
    "out_for_delivery": "delivered",
}
DESCRIPTIONS = {
    "created": "已收寄信息，等待揽收",
    "picked_up": "已揽收",
    "in_transit": "运输中",
    "out_for_delivery": "正在投递",
    "delivered": "已签收",
    "failed": "投递未成功",
    "returned": "已退回寄件人",
}
_PHONE = re.compile(r"^1\d{10}$")
_REGION = re.compile(r"^\d{6}$")


class Config:
    drop_callbacks = False


CONFIG = Config()


def problem(status: int, error: str, message: str) -> Response[Any]:
    return Response({"error": error, "message": message}, status_code=status)


WEBHOOKS = SignedWebhooks(
    "Courier", "sandbox.courier_deliveries", SECRET, dropped=lambda: CONFIG.drop_callbacks
)
schedule = WEBHOOKS.schedule


class Sender(msgspec.Struct, forbid_unknown_fields=True):
    hall_id: str
    hall_name: str = ""
    phone: str | None = None


class Recipient(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    phone: str
    address: str
    region_code: str


class ShipmentIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    project_no: str
    sender: Sender
    recipient: Recipient
    notify_url: str | None = None
    contents: str = "政务服务办理结果"


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "seq": row["seq"],
        "waybill_no": row["waybill_no"],
        "status": row["status"],
        "at": row["at"].isoformat(),
        "place": row["place"],
        "description": row["description"],
    }


def _mask(name: str, phone: str) -> dict[str, str]:
    return {"name": name[:1] + "*" * max(len(name) - 1, 1), "phone": phone[:3] + "****" + phone[-4:]}


async def add_event(
    conn: Conn,
    waybill_no: str,
    project_no: str,
    status: str,
    place: str,
    at: datetime | None,
    hold_ms: int = 0,
) -> dict[str, Any]:
    seq = await conn.fetchval("UPDATE sandbox.courier_counter SET seq = seq + 1 RETURNING seq")
    if hold_ms:
        await asyncio.sleep(hold_ms / 1000)  # a slow commit, for tests of the feed
    row = await conn.fetchrow(
        """
        INSERT INTO sandbox.courier_events (seq, event_id, waybill_no, status, at, place, description)
        VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
        """,
        seq,
        "CE" + uuid.uuid4().hex.upper(),
        waybill_no,
        status,
        at or datetime.now(UTC),
        place,
        DESCRIPTIONS[status],
    )
    await conn.execute(
        "UPDATE sandbox.courier_shipments SET status = $2 WHERE waybill_no = $1", waybill_no, status
    )
    assert row is not None
    return {**event_json(row), "project_no": project_no}


@post("/v1/shipments")
async def create_shipment(
    db: NamedDependency[asyncpg.Pool], data: Annotated[ShipmentIn, Body()]
) -> Response[Any]:
    if not _PHONE.match(data.recipient.phone):
        return problem(422, "bad_phone", "recipient.phone must be an 11-digit mobile number")
    if not _REGION.match(data.recipient.region_code):
        return problem(422, "bad_region", "recipient.region_code must be 6 digits")
    if not data.recipient.name.strip() or not data.recipient.address.strip():
        return problem(422, "bad_recipient", "recipient name and address are required")
    request = msgspec.to_builtins(data)
    async with db.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('courier:' || $1))", data.request_id)
            seen = await conn.fetchrow(
                "SELECT * FROM sandbox.courier_shipments WHERE request_id = $1", data.request_id
            )
            if seen is not None:
                if seen["request"] != request:
                    return problem(409, "request_id_reused", "this request_id created a different shipment")
                return Response({"waybill_no": seen["waybill_no"], "status": seen["status"]}, status_code=201)
            waybill_no = f"11{secrets.randbelow(10**11):011d}"
            await conn.execute(
                """
                INSERT INTO sandbox.courier_shipments (waybill_no, request_id, request, project_no, notify_url, status)
                VALUES ($1, $2, $3, $4, $5, 'created')
                """,
                waybill_no,
                data.request_id,
                request,
                data.project_no,
                data.notify_url,
            )
            event = await add_event(
                conn,
                waybill_no,
                data.project_no,
                "created",
                data.sender.hall_name or data.sender.hall_id,
                None,
            )
        schedule(db, data.notify_url, [event])
        return Response({"waybill_no": waybill_no, "status": "created"}, status_code=201)


@get("/v1/shipments/{waybill_no:str}")
async def track(db: NamedDependency[asyncpg.Pool], waybill_no: FromPath[str]) -> Response[Any]:
    row = await db.fetchrow("SELECT * FROM sandbox.courier_shipments WHERE waybill_no = $1", waybill_no)
    if row is None:
        return problem(404, "not_found", waybill_no)
    events = await db.fetch(
        "SELECT * FROM sandbox.courier_events WHERE waybill_no = $1 ORDER BY seq", waybill_no
    )
    recipient = row["request"]["recipient"]
    return Response(
        {
            "waybill_no": waybill_no,
            "carrier": "EMS",
            "project_no": row["project_no"],
            "status": row["status"],
            "recipient": {
                **_mask(recipient["name"], recipient["phone"]),
                "region_code": recipient["region_code"],
            },
            "events": [event_json(e) for e in events],
        }
    )


@get("/v1/changes")
async def changes(
    db: NamedDependency[asyncpg.Pool],
    since: Annotated[int, QueryParameter(ge=0)] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    rows = await db.fetch(
        """
        SELECT e.*, s.project_no FROM sandbox.courier_events e JOIN sandbox.courier_shipments s USING (waybill_no)
        WHERE e.seq > $1 ORDER BY e.seq LIMIT $2
        """,
        since,
        limit,
    )
    events = [{**event_json(r), "project_no": r["project_no"]} for r in rows]
    return {"events": events, "next_since": events[-1]["seq"] if events else since}


# --- control API: what the courier's people do ---


class MoveIn(msgspec.Struct, forbid_unknown_fields=True):
    to: Status | None = None  # the next on the main line when absent
    place: str | None = None
    at: datetime | None = None
    reason: str | None = None
    hold_ms: int = 0  # keep the transaction open this long after taking the seq
    deliver: bool = True


class ConfigIn(msgspec.Struct, forbid_unknown_fields=True):
    drop_callbacks: bool = False


async def _move(db: asyncpg.Pool, waybill_no: str, data: MoveIn, forced: str | None) -> Response[Any]:
    async with db.acquire() as conn:
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM sandbox.courier_shipments WHERE waybill_no = $1 FOR UPDATE", waybill_no
            )
            if row is None:
                return problem(404, "not_found", waybill_no)
            to = forced or data.to or MAIN_LINE.get(row["status"])
            if to is None or to not in NEXT[row["status"]]:
                return problem(409, "bad_transition", f"cannot go from {row['status']} to {to}")
            recipient = row["request"]["recipient"]
            default_place = {
                "picked_up": row["request"]["sender"]["hall_name"] or row["request"]["sender"]["hall_id"],
                "in_transit": "长沙邮区中心局",
                "out_for_delivery": f"{recipient['region_code']} 投递部",
                "delivered": f"{recipient['region_code']} 投递部",
                "failed": f"{recipient['region_code']} 投递部",
                "returned": "长沙邮区中心局",
            }[to]
            place = data.place or default_place
            if data.reason:
                place = f"{place}（{data.reason}）"
            event = await add_event(conn, waybill_no, row["project_no"], to, place, data.at, data.hold_ms)
        if data.deliver:
            schedule(db, row["notify_url"], [event])
        return Response(event, status_code=201)


@post("/shipments/{waybill_no:str}/advance")
async def advance(
    db: NamedDependency[asyncpg.Pool], waybill_no: FromPath[str], data: Annotated[MoveIn, Body()]
) -> Response[Any]:
    return await _move(db, waybill_no, data, None)


@post("/shipments/{waybill_no:str}/fail")
async def fail(
    db: NamedDependency[asyncpg.Pool], waybill_no: FromPath[str], data: Annotated[MoveIn, Body()]
) -> Response[Any]:
    return await _move(db, waybill_no, data, "failed")


@post("/shipments/{waybill_no:str}/return")
async def return_(
    db: NamedDependency[asyncpg.Pool], waybill_no: FromPath[str], data: Annotated[MoveIn, Body()]
) -> Response[Any]:
    return await _move(db, waybill_no, data, "returned")


@put("/config")
async def set_config(data: Annotated[ConfigIn, Body()]) -> dict[str, bool]:
    CONFIG.drop_callbacks = data.drop_callbacks
    return {"drop_callbacks": CONFIG.drop_callbacks}


@get("/deliveries/{event_id:str}")
async def deliveries(db: NamedDependency[asyncpg.Pool], event_id: FromPath[str]) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT attempt, outcome FROM sandbox.courier_deliveries WHERE event_id = $1 ORDER BY id", event_id
    )
    return {"attempts": [dict(r) for r in rows]}


router = Router(path="/courier", route_handlers=[create_shipment, track, changes])
control_router = Router(
    path="/_control/courier", route_handlers=[advance, fail, return_, set_config, deliveries]
)
