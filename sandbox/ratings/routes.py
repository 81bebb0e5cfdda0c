"""The 好差评 system: one rating per service instance, the national indicators, bad-rating follow-up.

A bad rating (1 or 2) must be followed up within 15 working days with a callback to the rater;
the control API plays the department doing that.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

INDICATORS = {
    "online": ("整体满意度", "办事效率", "办事指南精确度", "办事便捷度", "平台操作性"),
    "hall": ("整体满意度", "服务效率", "服务水平", "服务态度"),
}
FOLLOW_UP_WORKING_DAYS = 15


def problem(status: int, error: str, message: str) -> Response[Any]:
    return Response({"error": error, "message": message}, status_code=status)


class RatingIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    service_instance_id: str
    channel: Literal["online", "hall"]
    level: int
    indicators: dict[str, int]
    comment: str
    rater_ref: str


def rating_json(row: asyncpg.Record | None) -> dict[str, Any]:
    assert row is not None
    return {
        "rating_id": row["rating_id"],
        "service_instance_id": row["service_instance_id"],
        "channel": row["channel"],
        "level": row["level"],
        "indicators": row["indicators"],
        "comment": row["comment"],
        "created_at": row["created_at"].isoformat(),
        "follow_up": row["follow_up"],
    }


def _due(start: datetime) -> str:
    # Weekends only: the rating system is not told of holidays in this simulation.
    day, counted = start.date(), 0
    while counted < FOLLOW_UP_WORKING_DAYS:
        day += timedelta(days=1)
        if day.weekday() < 5:
            counted += 1
    return day.isoformat()


@post("/ratings")
async def rate(db: NamedDependency[asyncpg.Pool], data: Annotated[RatingIn, Body()]) -> Response[Any]:
    if not 1 <= data.level <= 5:
        return problem(422, "bad_level", "level must be 1..5")
    expected = set(INDICATORS[data.channel])
    if set(data.indicators) != expected or not all(1 <= v <= 5 for v in data.indicators.values()):
        return problem(422, "bad_indicators", f"indicators must be exactly {sorted(expected)}, each 1..5")
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('rating:' || $1))", data.service_instance_id
        )
        row = await conn.fetchrow(
            "SELECT * FROM sandbox.ratings WHERE service_instance_id = $1", data.service_instance_id
        )
        if row is not None:
            if row["request_id"] == data.request_id:
                return Response(rating_json(row), status_code=201)
            return problem(409, "already_rated", "one rating per service instance")
        now = datetime.now(UTC)
        follow_up = (
            {"required": True, "status": "pending", "due_date": _due(now), "note": None, "callback_at": None}
            if data.level <= 2
            else None
        )
        row = await conn.fetchrow(
            """
            INSERT INTO sandbox.ratings
                (rating_id, request_id, service_instance_id, channel, level, indicators, comment, rater_ref, follow_up)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *
            """,
            "PJ" + hashlib.sha256(data.request_id.encode()).hexdigest()[:14].upper(),
            data.request_id,
            data.service_instance_id,
            data.channel,
            data.level,
            data.indicators,
            data.comment,
            data.rater_ref,
            follow_up,
        )
        return Response(rating_json(row), status_code=201)


@get("/ratings/{rating_id:str}")
async def get_rating(db: NamedDependency[asyncpg.Pool], rating_id: FromPath[str]) -> Response[Any]:
    row = await db.fetchrow("SELECT * FROM sandbox.ratings WHERE rating_id = $1", rating_id)
    if row is None:
        return problem(404, "not_found", rating_id)
    return Response(rating_json(row))


class FollowUpIn(msgspec.Struct, forbid_unknown_fields=True):
    note: str
    status: Literal["called_back", "resolved"] = "called_back"


@post("/_control/ratings/{rating_id:str}/follow-up")
async def follow_up(
    db: NamedDependency[asyncpg.Pool], rating_id: FromPath[str], data: Annotated[FollowUpIn, Body()]
) -> Response[Any]:
    row = await db.fetchrow("SELECT * FROM sandbox.ratings WHERE rating_id = $1", rating_id)
    if row is None or row["follow_up"] is None:
        return problem(404, "not_found", rating_id)
    updated = {
        **row["follow_up"],
        "status": data.status,
        "note": data.note,
        "callback_at": datetime.now(UTC).isoformat(),
    }
    row = await db.fetchrow(
        "UPDATE sandbox.ratings SET follow_up = $2 WHERE rating_id = $1 RETURNING *", rating_id, updated
    )
    return Response(rating_json(row))


router = Router(path="/ratings", route_handlers=[rate, get_rating, follow_up])
