"""好差评: one rating per concluded case, the national indicators for its channel, forwarded to
the rating system; the rater sees the follow-up of a bad rating. Rating is never required:
an unrated case is a todo (`ratingDue`), and nothing waits for it.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any

import asyncpg

from adapters.errors import ProblemError, UpstreamUnavailable
from adapters.ratings.client import RatingClient, RatingRefused
from adapters.ratings.schemas import FollowUp
from auth.principal import Principal
from bff.cases.service import CaseService, RatingRef
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.ratings.schemas import FollowUpOut, RatingIn, RatingOut

# Nationally uniform (DOMAIN.md); never invent indicators.
INDICATORS: dict[str, tuple[str, ...]] = {
    "online": ("整体满意度", "办事效率", "办事指南精确度", "办事便捷度", "平台操作性"),
    "hall": ("整体满意度", "服务效率", "服务水平", "服务态度"),
}
LEVELS = {5: "非常满意", 4: "满意", 3: "基本满意", 2: "不满意", 1: "非常不满意"}


def _out(row: asyncpg.Record | None, follow_up: FollowUpOut | None, status: str = "ok") -> RatingOut:
    assert row is not None
    return RatingOut(
        id=str(row["id"]),
        case_id=str(row["case_id"]),
        channel=row["channel"],
        level=row["level"],
        level_name=LEVELS[row["level"]],
        indicators=dict(row["indicators"]),
        comment=row["comment"],
        created_at=row["created_at"].astimezone(UTC).isoformat(),
        follow_up=follow_up,
        follow_up_status=status,  # type: ignore[arg-type]
    )


class RatingService:
    def __init__(self, pool: asyncpg.Pool, client: RatingClient, cases: CaseService) -> None:
        self.pool = pool
        self.client = client
        self.cases = cases

    async def own_case(self, principal: Principal, case_id: str) -> asyncpg.Record:
        return await self.cases.own(principal, case_id)

    async def of_case(self, conn: Any, case_id: uuid.UUID) -> RatingRef | None:
        """The case view's port (`cases.service.Ratings`): this case's rating, if any."""
        row = await conn.fetchrow("SELECT id, level, created_at FROM bff.ratings WHERE case_id = $1", case_id)
        return RatingRef(id=row["id"], level=row["level"], created_at=row["created_at"]) if row else None

    async def get(self, principal: Principal, rating_id: str) -> RatingOut:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.ratings WHERE id = $1", parse_uuid(rating_id, "rating")
        )
        return await self.view(await owned(self.pool, principal, "rating", rating_id, row))

    async def rate(self, ctx: IdemContext, case: asyncpg.Record, data: RatingIn) -> Recorded[RatingOut]:
        rating_id = ctx.request_id
        row = await self.pool.fetchrow("SELECT * FROM bff.ratings WHERE id = $1", rating_id)
        if row is None:
            if case["status"] not in ("concluded", "delivering", "delivered", "rated"):
                raise ProblemError(
                    "a case can be rated once it is concluded",
                    status=409,
                    code="case_not_concluded",
                    detail_zh="办件办结后才能评价",
                )
            expected = INDICATORS[case["channel"]]
            if set(data.indicators) != set(expected):
                raise ProblemError(
                    "indicators must be exactly: " + "、".join(expected),
                    status=422,
                    code="indicators_invalid",
                    extra={"expected": list(expected)},
                    detail_zh="评价指标须恰为：" + "、".join(expected),
                )
            row = await self.pool.fetchrow(
                """
                INSERT INTO bff.ratings (id, case_id, person_id, request_id, channel, level, indicators, comment, status)
                VALUES ($1, $2, $3, $1, $4, $5, $6, $7, 'pending')
                ON CONFLICT (case_id) DO NOTHING RETURNING *
                """,
                rating_id,
                case["id"],
                case["person_id"],
                case["channel"],
                data.level,
                data.indicators,
                data.comment,
            )
            if row is None:
                raise ProblemError(
                    "one rating per case", status=409, code="already_rated", detail_zh="每个办件只能评价一次"
                )
        try:
            upstream = await self.client.rate(
                request_id=str(rating_id),
                service_instance_id=case["project_no"],
                channel=row["channel"],
                level=row["level"],
                indicators=dict(row["indicators"]),
                comment=row["comment"],
                rater_ref=row["person_id"],
            )
        except RatingRefused as exc:
            await self.pool.execute("DELETE FROM bff.ratings WHERE id = $1 AND status = 'pending'", rating_id)
            code = "already_rated" if exc.reason == "already_rated" else "indicators_invalid"
            raise ProblemError(
                exc.detail,
                status=409 if code == "already_rated" else 422,
                code=code,
                detail_zh=f"评价系统拒绝了评价：{exc.detail}",
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "UPDATE bff.ratings SET status = 'submitted', upstream_rating_id = $2 WHERE id = $1 RETURNING *",
                rating_id,
                upstream.rating_id,
            )
            await self.cases.mark_rated(conn, case["id"])
            return await ctx.finish(conn, _out(row, _follow(upstream.follow_up)))

    async def view(self, row: asyncpg.Record) -> RatingOut:
        if row["upstream_rating_id"] is None:
            return _out(row, None)
        try:
            upstream = await self.client.get(row["upstream_rating_id"])
        except (UpstreamUnavailable, ProblemError):
            return _out(row, None, "unavailable")
        return _out(row, _follow(upstream.follow_up))


def _follow(follow_up: FollowUp | None) -> FollowUpOut | None:
    if follow_up is None:
        return None
    return FollowUpOut(
        required=follow_up.required,
        status=follow_up.status,
        due_date=follow_up.due_date,
        note=follow_up.note,
        callback_at=follow_up.callback_at,
    )
