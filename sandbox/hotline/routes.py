"""The 12345 hotline system (政务服务便民热线): tickets, their workflow, a knowledge base, signed
webhooks per step, a commit-ordered changes feed, and a control API for the operators and departments.

Authentication: `Authorization: Bearer <access key>` — the channel key (`sandbox-hotline-channel-key`,
the BFF's app/mini-program/kiosk channel) for `/hotline/v1/...`, the department key
(`sandbox-hotline-dept-key`) for `/hotline/v1/departments/...`. Errors are
`{"error": {"code": "...", "message": "..."}}` with the HTTP status.

Workflow (status / status_code): accepted 受理 10 → dispatched 分类派单 20 → in_progress 限时办理 30
(⇄ awaiting_info 待补充 35 while the resident is asked for more: the clock stops) → supervised 督办 40
(only once the deadline has passed) → feedback_given 反馈/待回访 50 (the resident rates) → closed
办结归档 60. A consultation the operator answers at once goes accepted → feedback_given.

Deadline rule (限时办理), counted from dispatch: consultation 1 working day, praise 3, complaint 5,
suggestion 10, report 15 working days — the deadline is 18:00 China time on the N-th working day
(Monday–Friday) after the day of dispatch; an `urgent` dispatch is due 2 hours after dispatch, whatever
the kind. Time spent awaiting the resident's information is added to the deadline when they answer.

Anonymity: a caller may ask that the department not learn who they are (保密) for a complaint, report or
suggestion; the department's view then has `caller: null`. Consultations and praise cannot be
anonymous (422 `anonymity_not_allowed`).

Webhooks: each event is POSTed to the ticket's `notify_url`, signed `X-Hotline-Signature:
sha256=<hex HMAC-SHA256 of "{X-Hotline-Timestamp}.{raw body}">` under `sandbox-hotline-secret`, with
`X-Hotline-Event-Id`, retried on non-2xx. The feed `GET /hotline/v1/changes?since=` has every event by
`seq`, taken from a one-row counter in the event's own transaction: seq order is commit order.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
import asyncpg.pool
import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from sandbox.hotline import kb
from sandbox.webhooks import SignedWebhooks

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
T = TypeVar("T")
CHINA = timezone(timedelta(hours=8))
SECRET = os.environ.get("SANDBOX_HOTLINE_SECRET", "sandbox-hotline-secret")
CHANNEL_KEY = os.environ.get("SANDBOX_HOTLINE_CHANNEL_KEY", "sandbox-hotline-channel-key")
DEPT_KEY = os.environ.get("SANDBOX_HOTLINE_DEPT_KEY", "sandbox-hotline-dept-key")
Kind = Literal["consultation", "complaint", "report", "suggestion", "praise"]
WORKING_DAYS: dict[str, int] = {
    "consultation": 1,
    "praise": 3,
    "complaint": 5,
    "suggestion": 10,
    "report": 15,
}
URGENT_HOURS = 2
DUE_HOUR = 18
ANONYMOUS_KINDS = {"complaint", "report", "suggestion"}
STATUS_CODES = {
    "accepted": "10",
    "dispatched": "20",
    "in_progress": "30",
    "awaiting_info": "35",
    "supervised": "40",
    "feedback_given": "50",
    "closed": "60",
}
MAX_CONTENT = 2000
MAX_ATTACHMENTS = 9
_PHONE = re.compile(r"^1\d{10}$")
_REGION = re.compile(r"^\d{6}$")


class Config:
    drop_webhooks = False


CONFIG = Config()


def problem(status: int, code: str, message: str) -> Response[Any]:
    return Response({"error": {"code": code, "message": message}}, status_code=status)


WEBHOOKS = SignedWebhooks(
    "Hotline", "sandbox.hotline_deliveries", SECRET, dropped=lambda: CONFIG.drop_webhooks
)
schedule = WEBHOOKS.schedule


def _authorised(request: Request[Any, Any, Any], key: str) -> bool:
    given = request.headers.get("authorization", "").removeprefix("Bearer ")
    return hmac.compare_digest(given.encode(), key.encode())


def _decode(raw: bytes, type_: type[T]) -> T | Response[Any]:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.DecodeError as exc:
        return problem(400, "bad_request", str(exc))


def deadline(kind: str, dispatched_at: datetime, urgent: bool) -> datetime:
    if urgent:
        return dispatched_at + timedelta(hours=URGENT_HOURS)
    day, counted = dispatched_at.astimezone(CHINA).date(), 0
    while counted < WORKING_DAYS[kind]:
        day += timedelta(days=1)
        if day.weekday() < 5:
            counted += 1
    return datetime(day.year, day.month, day.day, DUE_HOUR, tzinfo=CHINA).astimezone(UTC)


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "event_id": row["event_id"],
        "seq": row["seq"],
        "ticket_no": row["ticket_no"],
        "ticket_seq": row["ticket_seq"],
        "type": row["type"],
        "status": row["status"],
        "status_code": row["status_code"],
        "occurred_at": row["occurred_at"].isoformat(),
        "data": row["data"],
    }


async def emit(
    conn: Conn,
    ticket_no: str,
    type_: str,
    status: str,
    data: dict[str, Any],
    at: datetime | None = None,
    hold_ms: int = 0,
) -> dict[str, Any]:
    seq = await conn.fetchval("UPDATE sandbox.hotline_counter SET seq = seq + 1 RETURNING seq")
    if hold_ms:
        await asyncio.sleep(hold_ms / 1000)  # a slow commit, for tests of the feed
    ticket_seq = await conn.fetchval(
        """
        UPDATE sandbox.hotline_tickets SET ticket_seq = ticket_seq + 1, status = $2, status_code = $3
        WHERE ticket_no = $1 RETURNING ticket_seq
        """,
        ticket_no,
        status,
        STATUS_CODES[status],
    )
    row = await conn.fetchrow(
        """
        INSERT INTO sandbox.hotline_events
            (seq, event_id, ticket_no, ticket_seq, type, status, status_code, occurred_at, data)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *
        """,
        seq,
        "HE" + uuid.uuid4().hex.upper(),
        ticket_no,
        ticket_seq,
        type_,
        status,
        STATUS_CODES[status],
        at or datetime.now(UTC),
        data,
    )
    assert row is not None
    return event_json(row)


def _mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:]


def ticket_json(
    row: asyncpg.Record, events: list[asyncpg.Record], view: Literal["channel", "department"]
) -> dict[str, Any]:
    caller = row["caller"]
    if view == "department":
        shown = None if row["anonymous"] else {"name": caller["name"], "phone": caller["phone"]}
    else:
        shown = {"name": caller["name"], "phone": _mask_phone(caller["phone"]), "ref": caller.get("ref")}
    due = row["deadline_at"]
    running = row["status"] in {"dispatched", "in_progress", "supervised"}
    out = {
        "ticket_no": row["ticket_no"],
        "kind": row["kind"],
        "title": row["title"],
        "content": row["content"],
        "channel": row["channel"],
        "anonymous": row["anonymous"],
        "caller": shown,
        "location": row["location"],
        "related": row["related"],
        "attachments": row["attachments"],
        "status": row["status"],
        "status_code": row["status_code"],
        "ticket_seq": row["ticket_seq"],
        "category": row["category"],
        "department_code": row["department_code"],
        "department_name": row["department_name"],
        "urgency": row["urgency"],
        "deadline_at": due.isoformat() if due else None,
        "overdue": bool(due and running and due < datetime.now(UTC)),
        "open_info_request": row["open_info_request"],
        "rating": row["rating"],
        "accepted_at": row["created_at"].isoformat(),
        "events": [event_json(e) for e in events],
    }
    if view == "channel":
        out["follow_code"] = row["follow_code"]
    return out


async def _ticket(conn: Conn | asyncpg.Pool, ticket_no: str, lock: bool = False) -> asyncpg.Record | None:
    if lock:
        return await conn.fetchrow(
            "SELECT * FROM sandbox.hotline_tickets WHERE ticket_no = $1 FOR UPDATE", ticket_no
        )
    return await conn.fetchrow("SELECT * FROM sandbox.hotline_tickets WHERE ticket_no = $1", ticket_no)


async def _events(conn: Conn | asyncpg.Pool, ticket_no: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM sandbox.hotline_events WHERE ticket_no = $1 ORDER BY ticket_seq", ticket_no
        )
    )


async def dedup(conn: Conn, request_id: str, raw: bytes) -> Response[Any] | None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('hotline:' || $1))", request_id)
    row = await conn.fetchrow("SELECT * FROM sandbox.hotline_requests WHERE request_id = $1", request_id)
    if row is None:
        return None
    if row["fingerprint"] != hashlib.sha256(raw).hexdigest():
        return problem(409, "request_id_reused", "this request_id was used for another request")
    return Response(row["body"], status_code=row["status"])


async def answer(conn: Conn, request_id: str, raw: bytes, status: int, body: dict[str, Any]) -> Response[Any]:
    await conn.execute(
        "INSERT INTO sandbox.hotline_requests (request_id, fingerprint, status, body) VALUES ($1, $2, $3, $4)",
        request_id,
        hashlib.sha256(raw).hexdigest(),
        status,
        body,
    )
    return Response(body, status_code=status)


# --- filing and following a ticket (the channel's side) ---


class Caller(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    phone: str
    ref: str | None = None  # the channel's own reference for the resident (opaque to 12345)


class Location(msgspec.Struct, forbid_unknown_fields=True):
    region_code: str
    address: str = ""
    lng: float | None = None
    lat: float | None = None


class Attachment(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    url: str
    sha256: str | None = None
    size: int | None = None


class Related(msgspec.Struct, forbid_unknown_fields=True):
    catalog_code: str | None = None
    project_no: str | None = None


class TicketIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    kind: Kind
    content: str
    caller: Caller
    channel: Literal["app", "mini_program", "kiosk", "web"]
    title: str | None = None
    anonymous: bool = False
    location: Location | None = None
    related: Related = msgspec.field(default_factory=Related)
    attachments: list[Attachment] = []
    notify_url: str | None = None


def _invalid(data: TicketIn) -> str | None:
    if not data.request_id or len(data.request_id) > 64:
        return "request_id: 1 to 64 characters"
    if not 5 <= len(data.content.strip()) <= MAX_CONTENT:
        return f"content: 5 to {MAX_CONTENT} characters"
    if data.title is not None and not 1 <= len(data.title) <= 60:
        return "title: 1 to 60 characters"
    if not data.caller.name.strip() or not _PHONE.match(data.caller.phone):
        return "caller: a name and an 11-digit mobile number"
    if data.location is not None and not _REGION.match(data.location.region_code):
        return "location.region_code: 6 digits"
    if len(data.attachments) > MAX_ATTACHMENTS:
        return f"attachments: at most {MAX_ATTACHMENTS}"
    if any(not a.name or not a.url.startswith(("https://", "http://")) for a in data.attachments):
        return "attachments: each needs a name and an http(s) url"
    return None


@post("/v1/tickets", status_code=201)
async def file_ticket(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    """受理: the ticket is accepted at once and numbered. Idempotent by request_id."""
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    raw = await request.body()
    data = _decode(raw, TicketIn)
    if isinstance(data, Response):
        return data
    if (why := _invalid(data)) is not None:
        return problem(422, "invalid_field", why)
    if data.anonymous and data.kind not in ANONYMOUS_KINDS:
        return problem(422, "anonymity_not_allowed", f"a {data.kind} cannot be kept from the department")
    async with db.acquire() as conn:
        async with conn.transaction():
            if (seen := await dedup(conn, data.request_id, raw)) is not None:
                return seen
            serial = await conn.fetchval("SELECT nextval('sandbox.hotline_ticket_serial')")
            ticket_no = f"RX{datetime.now(CHINA):%Y%m%d}{serial % 10**6:06d}"
            title = data.title or data.content.strip()[:20]
            await conn.execute(
                """
                INSERT INTO sandbox.hotline_tickets (ticket_no, request_id, fingerprint, follow_code, kind, title,
                    content, channel, caller, anonymous, location, related, attachments, notify_url, status,
                    status_code)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'accepted', '10')
                """,
                ticket_no,
                data.request_id,
                hashlib.sha256(raw).hexdigest(),
                f"{secrets.randbelow(10**6):06d}",
                data.kind,
                title,
                data.content,
                data.channel,
                msgspec.to_builtins(data.caller),
                data.anonymous,
                msgspec.to_builtins(data.location),
                msgspec.to_builtins(data.related),
                msgspec.to_builtins(data.attachments),
                data.notify_url,
            )
            event = await emit(
                conn, ticket_no, "accepted", "accepted", {"kind": data.kind, "channel": data.channel}
            )
            row = await _ticket(conn, ticket_no)
            assert row is not None
            body = ticket_json(row, await _events(conn, ticket_no), "channel")
            response = await answer(conn, data.request_id, raw, 201, body)
        schedule(db, data.notify_url, [event])
        return response


@get("/v1/tickets/{ticket_no:str}")
async def get_ticket(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], ticket_no: FromPath[str]
) -> Response[Any]:
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    row = await _ticket(db, ticket_no)
    if row is None:
        return problem(404, "ticket_not_found", ticket_no)
    return Response(ticket_json(row, await _events(db, ticket_no), "channel"))


@get("/v1/tickets")
async def list_tickets(
    db: NamedDependency[asyncpg.Pool],
    request: Request[Any, Any, Any],
    caller_ref: Annotated[str, QueryParameter()] = "",
) -> Response[Any]:
    """The tickets one resident filed through this channel (by the channel's caller ref), newest first."""
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    if not caller_ref:
        return problem(422, "invalid_field", "caller_ref is required")
    rows = await db.fetch(
        "SELECT * FROM sandbox.hotline_tickets WHERE caller ->> 'ref' = $1 ORDER BY created_at DESC LIMIT 100",
        caller_ref,
    )
    return Response(
        {
            "tickets": [
                {k: v for k, v in ticket_json(r, [], "channel").items() if k not in {"events", "content"}}
                for r in rows
            ]
        }
    )


class ReplyIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    info_request_id: str
    text: str
    attachments: list[Attachment] = []


@post("/v1/tickets/{ticket_no:str}/replies", status_code=201)
async def reply(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], ticket_no: FromPath[str]
) -> Response[Any]:
    """The resident answers a request for more information; the clock runs again, the paused time is
    added to the deadline."""
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    raw = await request.body()
    data = _decode(raw, ReplyIn)
    if isinstance(data, Response):
        return data
    if not 1 <= len(data.text.strip()) <= MAX_CONTENT or len(data.attachments) > MAX_ATTACHMENTS:
        return problem(
            422, "invalid_field", f"text: 1 to {MAX_CONTENT} characters, at most {MAX_ATTACHMENTS} files"
        )
    async with db.acquire() as conn:
        async with conn.transaction():
            if (seen := await dedup(conn, data.request_id, raw)) is not None:
                return seen
            row = await _ticket(conn, ticket_no, lock=True)
            if row is None:
                return problem(404, "ticket_not_found", ticket_no)
            if row["status"] != "awaiting_info" or row["open_info_request"]["id"] != data.info_request_id:
                return problem(409, "no_open_info_request", "nothing to answer")
            now = datetime.now(UTC)
            paused = now - row["paused_at"]
            await conn.execute(
                """
                UPDATE sandbox.hotline_tickets SET open_info_request = NULL, paused_at = NULL,
                    deadline_at = deadline_at + $2 WHERE ticket_no = $1
                """,
                ticket_no,
                paused,
            )
            event = await emit(
                conn,
                ticket_no,
                "info_supplied",
                row["resume_status"],
                {
                    "info_request_id": data.info_request_id,
                    "text": data.text,
                    "attachments": msgspec.to_builtins(data.attachments),
                    "paused_s": int(paused.total_seconds()),
                },
            )
            response = await answer(conn, data.request_id, raw, 201, {"event": event})
        schedule(db, row["notify_url"], [event])
        return response


class RatingIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    satisfaction: Literal["satisfied", "basically_satisfied", "dissatisfied"]
    resolved: bool
    comment: str = ""


@post("/v1/tickets/{ticket_no:str}/rating", status_code=201)
async def rate(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], ticket_no: FromPath[str]
) -> Response[Any]:
    """回访: once the department has given its feedback, the resident rates the handling, once."""
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    raw = await request.body()
    data = _decode(raw, RatingIn)
    if isinstance(data, Response):
        return data
    if len(data.comment) > 500:
        return problem(422, "invalid_field", "comment: at most 500 characters")
    async with db.acquire() as conn:
        async with conn.transaction():
            if (seen := await dedup(conn, data.request_id, raw)) is not None:
                return seen
            row = await _ticket(conn, ticket_no, lock=True)
            if row is None:
                return problem(404, "ticket_not_found", ticket_no)
            if row["rating"] is not None:
                return problem(409, "already_rated", "the handling was already rated")
            if row["status"] != "feedback_given":
                return problem(409, "not_ratable", f"nothing to rate while {row['status']}")
            rating = {**msgspec.to_builtins(data), "rated_at": datetime.now(UTC).isoformat()}
            del rating["request_id"]
            await conn.execute(
                "UPDATE sandbox.hotline_tickets SET rating = $2 WHERE ticket_no = $1", ticket_no, rating
            )
            event = await emit(conn, ticket_no, "rated", "feedback_given", rating)
            response = await answer(conn, data.request_id, raw, 201, {"event": event})
        schedule(db, row["notify_url"], [event])
        return response


@get("/v1/changes")
async def changes(
    db: NamedDependency[asyncpg.Pool],
    request: Request[Any, Any, Any],
    since: Annotated[int, QueryParameter()] = 0,
    limit: Annotated[int, QueryParameter()] = 100,
) -> Response[Any]:
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    if since < 0 or not 1 <= limit <= 500:
        return problem(422, "invalid_field", "since >= 0; limit: 1 to 500")
    rows = await db.fetch(
        "SELECT * FROM sandbox.hotline_events WHERE seq > $1 ORDER BY seq LIMIT $2", since, limit
    )
    events = [event_json(r) for r in rows]
    return Response({"events": events, "next_since": events[-1]["seq"] if events else since})


# --- the knowledge base ---


def kb_json(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    out = {
        "kb_id": row["kb_id"],
        "category": row["category"],
        "question": row["question"],
        "answer": row["answer"],
        "keywords": list(row["keywords"]),
        "department": row["department"],
        "updated_at": row["updated_at"].isoformat(),
    }
    if isinstance(row, dict) and "score" in row:
        out["score"] = row["score"]
    return out


@get("/v1/kb/search")
async def kb_search(
    db: NamedDependency[asyncpg.Pool],
    request: Request[Any, Any, Any],
    q: Annotated[str, QueryParameter()] = "",
    limit: Annotated[int, QueryParameter()] = 5,
) -> Response[Any]:
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    if not 1 <= len(q.strip()) <= 200 or not 1 <= limit <= 20:
        return problem(422, "invalid_field", "q: 1 to 200 characters; limit: 1 to 20")
    rows = [dict(r) for r in await db.fetch("SELECT * FROM sandbox.hotline_kb ORDER BY kb_id")]
    found = kb.search(rows, q, limit)
    return Response({"query": q, "results": [kb_json(r) for r in found]})


@get("/v1/kb/{kb_id:str}")
async def kb_entry(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], kb_id: FromPath[str]
) -> Response[Any]:
    if not _authorised(request, CHANNEL_KEY):
        return problem(401, "unauthorised", "a channel access key is required")
    row = await db.fetchrow("SELECT * FROM sandbox.hotline_kb WHERE kb_id = $1", kb_id)
    if row is None:
        return problem(404, "kb_not_found", kb_id)
    return Response(kb_json(row))


# --- the department's view: the caller is left out of anonymous tickets ---


@get("/v1/departments/{department_code:str}/tickets")
async def dept_tickets(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], department_code: FromPath[str]
) -> Response[Any]:
    if not _authorised(request, DEPT_KEY):
        return problem(401, "unauthorised", "a department access key is required")
    rows = await db.fetch(
        "SELECT * FROM sandbox.hotline_tickets WHERE department_code = $1 ORDER BY deadline_at LIMIT 200",
        department_code,
    )
    return Response({"tickets": [ticket_json(r, [], "department") for r in rows]})


@get("/v1/departments/{department_code:str}/tickets/{ticket_no:str}")
async def dept_ticket(
    db: NamedDependency[asyncpg.Pool],
    request: Request[Any, Any, Any],
    department_code: FromPath[str],
    ticket_no: FromPath[str],
) -> Response[Any]:
    if not _authorised(request, DEPT_KEY):
        return problem(401, "unauthorised", "a department access key is required")
    row = await _ticket(db, ticket_no)
    if row is None or row["department_code"] != department_code:
        return problem(404, "ticket_not_found", ticket_no)
    return Response(ticket_json(row, await _events(db, ticket_no), "department"))


router = Router(
    path="/hotline",
    route_handlers=[
        file_ticket,
        get_ticket,
        list_tickets,
        reply,
        rate,
        changes,
        kb_search,
        kb_entry,
        dept_tickets,
        dept_ticket,
    ],
)


# --- control API: what the operators (话务员) and departments do ---


class AdvanceIn(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["dispatch", "start", "supervise", "ask", "feedback", "close"]
    department_code: str = "11430100007181473J"
    department_name: str = "长沙市人力资源和社会保障局"
    category: str = "社会保障/社保卡"
    urgent: bool = False
    questions: list[str] = []
    answer: str = ""
    officer: str = "李专员"
    opinion: str = ""
    at: datetime | None = None  # when it happened (e.g. a dispatch in the past, to make a ticket overdue)
    hold_ms: int = 0  # keep the transaction open this long after taking the seq
    deliver: bool = True


_FROM = {
    "dispatch": {"accepted"},
    "start": {"dispatched"},
    "supervise": {"dispatched", "in_progress"},
    "ask": {"in_progress", "supervised"},
    "feedback": {"in_progress", "supervised"},
    "close": {"feedback_given"},
}


async def _advance(conn: Conn, row: asyncpg.Record, data: AdvanceIn) -> dict[str, Any] | Response[Any]:
    ticket_no, at = row["ticket_no"], data.at or datetime.now(UTC)
    payload: dict[str, Any]
    allowed = _FROM[data.action] | (
        {"accepted"} if data.action == "feedback" and row["kind"] == "consultation" else set()
    )
    if row["status"] not in allowed:
        return problem(409, "bad_transition", f"cannot {data.action} from {row['status']}")
    if data.action == "dispatch":
        due = deadline(row["kind"], at, data.urgent)
        await conn.execute(
            """
            UPDATE sandbox.hotline_tickets SET department_code = $2, department_name = $3, category = $4,
                urgency = $5, deadline_at = $6 WHERE ticket_no = $1
            """,
            ticket_no,
            data.department_code,
            data.department_name,
            data.category,
            "urgent" if data.urgent else "normal",
            due,
        )
        payload = {
            "department_code": data.department_code,
            "department_name": data.department_name,
            "category": data.category,
            "urgency": "urgent" if data.urgent else "normal",
            "deadline_at": due.isoformat(),
        }
        return await emit(conn, ticket_no, "dispatched", "dispatched", payload, at, data.hold_ms)
    if data.action == "start":
        payload = {"department_name": row["department_name"], "officer": data.officer}
        return await emit(conn, ticket_no, "started", "in_progress", payload, at, data.hold_ms)
    if data.action == "supervise":
        if row["deadline_at"] is None or row["deadline_at"] >= at:
            return problem(409, "not_overdue", "a ticket is supervised only once its deadline has passed")
        payload = {
            "deadline_at": row["deadline_at"].isoformat(),
            "supervisor": "市12345热线督办科",
            "opinion": data.opinion,
        }
        return await emit(conn, ticket_no, "supervised", "supervised", payload, at, data.hold_ms)
    if data.action == "ask":
        if not data.questions:
            return problem(422, "no_questions", "say what the resident should add")
        info = {"id": "IR" + uuid.uuid4().hex[:10].upper(), "questions": data.questions}
        await conn.execute(
            """
            UPDATE sandbox.hotline_tickets SET open_info_request = $2, paused_at = $3, resume_status = status
            WHERE ticket_no = $1
            """,
            ticket_no,
            info,
            at,
        )
        return await emit(
            conn, ticket_no, "info_requested", "awaiting_info", {"info_request_id": info["id"], **info}, at
        )
    if data.action == "feedback":
        if not data.answer.strip():
            return problem(422, "no_answer", "feedback needs the answer given to the resident")
        payload = {
            "answer": data.answer,
            "officer": data.officer,
            "department_name": row["department_name"] or "12345热线",
            "on_time": row["deadline_at"] is None or at <= row["deadline_at"],
        }
        return await emit(conn, ticket_no, "feedback_given", "feedback_given", payload, at, data.hold_ms)
    payload = {
        "rating": row["rating"],
        "visited": row["rating"] is not None,
        "opinion": data.opinion or "办结归档",
    }
    return await emit(conn, ticket_no, "closed", "closed", payload, at, data.hold_ms)


@post("/tickets/{ticket_no:str}/advance")
async def advance(
    db: NamedDependency[asyncpg.Pool], ticket_no: FromPath[str], data: Annotated[AdvanceIn, Body()]
) -> Response[Any]:
    async with db.acquire() as conn:
        async with conn.transaction():
            row = await _ticket(conn, ticket_no, lock=True)
            if row is None:
                return problem(404, "ticket_not_found", ticket_no)
            event = await _advance(conn, row, data)
        if isinstance(event, Response):
            return event
        if data.deliver:
            schedule(db, row["notify_url"], [event])
        return Response(event, status_code=201)


@post("/sweep")
async def sweep(db: NamedDependency[asyncpg.Pool]) -> Response[Any]:
    """督办 every ticket whose deadline has passed while it was still being handled."""
    events = []
    async with db.acquire() as conn:
        numbers = await conn.fetch(
            """
            SELECT ticket_no, notify_url FROM sandbox.hotline_tickets
            WHERE status IN ('dispatched', 'in_progress') AND deadline_at < now() ORDER BY deadline_at
            """
        )
        for number in numbers:
            async with conn.transaction():
                row = await _ticket(conn, number["ticket_no"], lock=True)
                assert row is not None
                event = await _advance(conn, row, AdvanceIn(action="supervise", opinion="超期自动督办"))
            if not isinstance(event, Response):
                events.append(event)
                schedule(db, number["notify_url"], [event])
    return Response({"supervised": [e["ticket_no"] for e in events], "events": events}, status_code=201)


class ConfigIn(msgspec.Struct, forbid_unknown_fields=True):
    drop_webhooks: bool = False


@put("/config")
async def set_config(data: Annotated[ConfigIn, Body()]) -> dict[str, bool]:
    CONFIG.drop_webhooks = data.drop_webhooks
    return {"drop_webhooks": CONFIG.drop_webhooks}


@get("/deliveries/{event_id:str}")
async def deliveries(db: NamedDependency[asyncpg.Pool], event_id: FromPath[str]) -> dict[str, Any]:
    rows = await db.fetch(
        "SELECT attempt, outcome FROM sandbox.hotline_deliveries WHERE event_id = $1 ORDER BY id", event_id
    )
    return {"attempts": [dict(r) for r in rows]}


control_router = Router(path="/_control/hotline", route_handlers=[advance, sweep, set_config, deliveries])
