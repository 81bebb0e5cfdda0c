"""Control API of the SMS gateway: the templates, what was sent (rendered text, segments, report
attempts), forced failures and undelivered reports, per-phone limit resets, the report URL."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from sandbox.sms.routes import SIGN_NAME, STATE, TEMPLATES


class SendFailures(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    code: str = "isp.SYSTEM_ERROR"
    count: int = 1


class Undelivered(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    err_code: str = "UNDELIV"
    count: int = 1


class Config(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    """Omitted fields go back to their defaults."""

    report_url: str | None = None
    per_minute: int = 1
    per_hour: int = 5
    per_day: int = 10
    balance: int = 10_000_000
    report_delay_ms: int = 20


@get("/templates")
async def templates() -> dict[str, Any]:
    return {
        "signName": SIGN_NAME,
        "templates": [
            {
                "templateCode": t.template_code,
                "name": t.name,
                "kind": t.kind,
                "text": t.text,
                "variables": t.variables,
            }
            for t in TEMPLATES.values()
        ],
    }


@get("/messages")
async def messages(
    db: NamedDependency[asyncpg.Pool],
    phone: Annotated[str | None, QueryParameter()] = None,
    out_id: Annotated[str | None, QueryParameter(query="outId")] = None,
) -> list[dict[str, Any]]:
    """Every message accepted (one per out_id), oldest first, with its report attempts."""
    rows = await db.fetch(
        """
        SELECT m.*, coalesce(
            (SELECT jsonb_agg(jsonb_build_object('attempt', r.attempt, 'outcome', r.outcome) ORDER BY r.id)
             FROM sandbox.sms_reports r WHERE r.biz_id = m.biz_id), '[]'::jsonb) AS reports
        FROM sandbox.sms_messages m
        WHERE ($1::text IS NULL OR m.phone = $1) AND ($2::text IS NULL OR m.out_id = $2)
        ORDER BY m.sent_at, m.biz_id
        """,
        phone,
        out_id,
    )
    return [
        {
            "bizId": r["biz_id"],
            "outId": r["out_id"],
            "phone": r["phone"],
            "signName": r["sign_name"],
            "templateCode": r["template_code"],
            "params": r["params"],
            "text": r["text"],
            "segments": r["segments"],
            "status": r["status"],
            "errCode": r["err_code"],
            "sentAt": r["sent_at"].isoformat(),
            "reportedAt": r["reported_at"].isoformat() if r["reported_at"] else None,
            "reports": r["reports"],
        }
        for r in rows
    ]


@get("/requests")
async def requests(
    db: NamedDependency[asyncpg.Pool],
    phone: Annotated[str | None, QueryParameter()] = None,
    out_id: Annotated[str | None, QueryParameter(query="outId")] = None,
) -> list[dict[str, Any]]:
    """Every send request received, oldest first, with the Code it was answered."""
    rows = await db.fetch(
        """
        SELECT * FROM sandbox.sms_requests
        WHERE ($1::text IS NULL OR phone = $1) AND ($2::text IS NULL OR out_id = $2) ORDER BY id
        """,
        phone,
        out_id,
    )
    return [
        {
            "phone": r["phone"],
            "outId": r["out_id"],
            "code": r["code"],
            "bizId": r["biz_id"],
            "duplicate": r["duplicate"],
            "receivedAt": r["received_at"].isoformat(),
        }
        for r in rows
    ]


@post("/failures", status_code=200)
async def force_failures(data: Annotated[SendFailures, Body()]) -> dict[str, list[str]]:
    """The next `count` new sends are answered `code` (HTTP 200, as Aliyun answers its codes)."""
    STATE.forced.extend([data.code] * data.count)
    return {"forced": list(STATE.forced)}


@post("/undelivered", status_code=200)
async def force_undelivered(data: Annotated[Undelivered, Body()]) -> dict[str, list[str]]:
    """The next `count` accepted messages are reported `success: false` with `err_code`."""
    STATE.undelivered.extend([data.err_code] * data.count)
    return {"undelivered": list(STATE.undelivered)}


@delete("/limits/{phone:str}", status_code=200)
async def reset_limits(db: NamedDependency[asyncpg.Pool], phone: FromPath[str]) -> dict[str, str]:
    """Messages sent to `phone` so far no longer count against its frequency limits."""
    await db.execute(
        """
        INSERT INTO sandbox.sms_limit_resets (phone, reset_at) VALUES ($1, clock_timestamp())
        ON CONFLICT (phone) DO UPDATE SET reset_at = excluded.reset_at
        """,
        phone,
    )
    return {"phone": phone}


@put("/config")
async def set_config(data: Annotated[Config, Body()]) -> Config:
    STATE.report_url = data.report_url
    STATE.per_minute, STATE.per_hour, STATE.per_day = data.per_minute, data.per_hour, data.per_day
    STATE.balance = data.balance
    STATE.report_delay_ms = data.report_delay_ms
    return data


@delete("/")
async def reset(db: NamedDependency[asyncpg.Pool]) -> None:
    """Forget requests, messages, reports, limit resets, forced failures and the configuration."""
    STATE.reset()
    await db.execute(
        "TRUNCATE sandbox.sms_requests, sandbox.sms_messages, sandbox.sms_limit_resets, sandbox.sms_reports"
    )


router = Router(
    path="/_control/sms",
    route_handlers=[
        templates,
        messages,
        requests,
        force_failures,
        force_undelivered,
        reset_limits,
        set_config,
        reset,
    ],
)
