"""The e-licence library's API (电子证照库): licences per holder, usage authorisation codes, the
counter-side check, watermarked copies and the usage report.

Authentication (every route under `/elicence/v1`): a registered client id and an HMAC —
`X-Elicence-Client-Id`, `X-Elicence-Timestamp` (unix seconds, within 5 minutes) and
`X-Elicence-Signature: sha256=<hex HMAC-SHA256 under the client secret of
"{timestamp}.{METHOD}.{path with query}.{raw body}">`. Method and path are signed so that a signed GET
cannot be replayed against another path. A *platform* client (the BFF, `sanxiang-bff`) names, on each
check or copy, the department it acts for; a *department* client (a hall's counter system) always
acts as its own department.

Every POST carries a `request_id`, unique per client. Checks and copies: a repeat answers exactly the
first answer, refusals included (a retried check of a single-use code answers the same verification,
it is not refused as used); auth codes: a repeat answers the same code, a refused grant is judged
afresh. The same request_id with another body is 409 `request_id_reused`.

Errors are `{"err_code": "...", "err_msg": "..."}` with the HTTP status: 400 bad_request /
bad_holder_code, 401 unauthenticated, 403 department_mismatch / forbidden, 404 licence_not_found /
auth_code_unknown, 409 licence_expired / licence_revoked / auth_code_used / auth_code_expired /
request_id_reused.

A licence is valid through its `valid_to` (inclusive, China date); `valid_to: null` is long-term (长期).
Holder codes travel in bodies, never in URLs (they are ID numbers): list and usage queries are POSTs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from html import escape
from typing import Annotated, Any, Literal, TypeVar

import asyncpg
import asyncpg.pool
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from sandbox.elicence.codes import valid_holder

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
CHINA = timezone(timedelta(hours=8))
MAX_SKEW_S = 300
COPY_VALID_DAYS = 30
# client id -> (secret, platform?, department code, department name)
CLIENTS: dict[str, tuple[str, bool, str, str]] = {
    "sanxiang-bff": (
        os.environ.get("SANDBOX_ELICENCE_SECRET", "sandbox-elicence-secret"),
        True,
        "11430000MB1D00010X",
        "湖南省政务服务平台",
    ),
    "counter-430104": (
        "sandbox-elicence-counter-secret",
        False,
        "11430104MB1D0789XK",
        "长沙市岳麓区政务服务中心",
    ),
}
STATUS_OF = {
    "bad_request": 400,
    "bad_holder_code": 400,
    "unauthenticated": 401,
    "department_mismatch": 403,
    "forbidden": 403,
    "licence_not_found": 404,
    "auth_code_unknown": 404,
    "licence_expired": 409,
    "licence_revoked": 409,
    "auth_code_used": 409,
    "auth_code_expired": 409,
    "request_id_reused": 409,
}
T = TypeVar("T")
Channel = Literal["window", "kiosk", "online", "app", "mini_program"]


def today() -> date:
    return datetime.now(CHINA).date()


def refusal(code: str, message: str) -> Response[Any]:
    return Response({"err_code": code, "err_msg": message}, status_code=STATUS_OF[code])


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _path(request: Request[Any, Any, Any]) -> str:
    query = request.scope.get("query_string", b"").decode()
    return request.scope["path"] + (f"?{query}" if query else "")


async def authenticate(request: Request[Any, Any, Any]) -> tuple[str, bytes] | Response[Any]:
    raw = await request.body()
    client_id = request.headers.get("x-elicence-client-id", "")
    client = CLIENTS.get(client_id)
    if client is None:
        return refusal("unauthenticated", "unknown client id")
    timestamp = request.headers.get("x-elicence-timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_S:
        return refusal("unauthenticated", "timestamp missing or more than 5 minutes off")
    given = request.headers.get("x-elicence-signature", "").removeprefix("sha256=")
    if not hmac.compare_digest(given, sign(client[0], timestamp, request.method, _path(request), raw)):
        return refusal("unauthenticated", "signature mismatch")
    return client_id, raw


def licence_status(row: asyncpg.Record) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["valid_to"] is not None and row["valid_to"] < today():
        return "expired"
    return "valid"


def licence_json(row: asyncpg.Record) -> dict[str, Any]:
    valid_to = row["valid_to"]
    return {
        "licence_id": row["licence_id"],
        "type_code": row["type_code"],
        "type_name": row["type_name"],
        "licence_no": row["licence_no"],
        "holder_name": row["holder_name"],
        "holder_code": row["holder_code"],
        "holder_type": row["holder_type"],
        "represented_by": row["represented_by"],
        "issuer_name": row["issuer_name"],
        "issuer_code": row["issuer_code"],
        "issue_date": row["issue_date"].isoformat(),
        "valid_from": row["valid_from"].isoformat(),
        "valid_to": valid_to.isoformat() if valid_to else None,
        "long_term": valid_to is None,
        "area_code": row["area_code"],
        "source_id": row["source_id"],
        "trust_grade": row["trust_grade"],
        "status": licence_status(row),
        "data": row["data"],
    }


def usage_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "usage_id": row["usage_id"],
        "licence_id": row["licence_id"],
        "type_code": row["type_code"],
        "type_name": row["type_name"],
        "holder_code": row["holder_code"],
        "action": row["action"],
        "result": row["result"],
        "refusal": row["refusal"],
        "department_code": row["department_code"],
        "department_name": row["department_name"],
        "purpose": row["purpose"],
        "channel": row["channel"],
        "used_at": row["used_at"].isoformat(),
    }


async def record_use(
    conn: Conn,
    licence: asyncpg.Record,
    *,
    action: str,
    result: str,
    refusal_code: str | None,
    department: tuple[str, str],
    purpose: str,
    channel: str,
    auth_code: str | None,
    client_id: str,
    hold_ms: int = 0,
) -> str:
    seq = await conn.fetchval("UPDATE sandbox.elicence_counter SET seq = seq + 1 RETURNING seq")
    if hold_ms:
        await asyncio.sleep(hold_ms / 1000)  # a slow commit, for tests of the feed
    usage_id = "EU" + uuid.uuid4().hex[:16].upper()
    await conn.execute(
        """
        INSERT INTO sandbox.elicence_usages (seq, usage_id, licence_id, holder_code, action, result, refusal,
            department_code, department_name, purpose, channel, auth_code, client_id, used_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
        """,
        seq,
        usage_id,
        licence["licence_id"],
        licence["holder_code"],
        action,
        result,
        refusal_code,
        department[0],
        department[1],
        purpose,
        channel,
        auth_code,
        client_id,
    )
    return usage_id


def _fingerprint(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


async def dedup(conn: Conn, client_id: str, request_id: str, raw: bytes) -> Response[Any] | None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('elicence:' || $1 || ':' || $2))", client_id, request_id
    )
    row = await conn.fetchrow(
        "SELECT * FROM sandbox.elicence_requests WHERE client_id = $1 AND request_id = $2",
        client_id,
        request_id,
    )
    if row is None:
        return None
    if row["fingerprint"] != _fingerprint(raw):
        return refusal("request_id_reused", "this request_id was used for another request")
    return Response(row["body"], status_code=row["status"])


async def answer(
    conn: Conn, client_id: str, request_id: str, raw: bytes, status: int, body: dict[str, Any]
) -> Response[Any]:
    await conn.execute(
        """
        INSERT INTO sandbox.elicence_requests (client_id, request_id, fingerprint, status, body)
        VALUES ($1, $2, $3, $4, $5)
        """,
        client_id,
        request_id,
        _fingerprint(raw),
        status,
        body,
    )
    return Response(body, status_code=status)


def _decode(raw: bytes, type_: type[T]) -> T | Response[Any]:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.DecodeError as exc:
        return refusal("bad_request", str(exc))


def _department(client_id: str, code: str | None, name: str | None) -> tuple[str, str] | None:
    """Who uses the licence: a platform client names the department, a department client is one."""
    _, platform, own_code, own_name = CLIENTS[client_id]
    if not platform:
        return own_code, own_name
    if not code or not name:
        return None
    return code, name


# --- the holder's licences ---


class SearchIn(msgspec.Struct, forbid_unknown_fields=True):
    holder_code: str
    holder_type: Literal["111", "001"] = "111"
    type_codes: list[str] = []
    include_invalid: bool = True
    include_represented: bool = False  # also licences of minors / legal persons the holder represents


@post("/v1/licences/search", status_code=200)
async def search(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    query = _decode(auth[1], SearchIn)
    if isinstance(query, Response):
        return query
    if not valid_holder(query.holder_type, query.holder_code):
        return refusal("bad_holder_code", f"not a well-formed holder code of type {query.holder_type}")
    rows = await db.fetch(
        """
        SELECT * FROM sandbox.elicence_licences
        WHERE (holder_code = $1 OR ($2 AND represented_by = $1))
          AND (cardinality($3::text[]) = 0 OR type_code = ANY($3))
        ORDER BY holder_code <> $1, type_code, issue_date DESC
        """,
        query.holder_code,
        query.include_represented,
        query.type_codes,
    )
    licences = [licence_json(r) for r in rows]
    if not query.include_invalid:
        licences = [lic for lic in licences if lic["status"] == "valid"]
    return Response({"holder_code": query.holder_code, "total": len(licences), "licences": licences})


@get("/v1/licences/{licence_id:str}")
async def one(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], licence_id: FromPath[str]
) -> Response[Any]:
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    row = await db.fetchrow("SELECT * FROM sandbox.elicence_licences WHERE licence_id = $1", licence_id)
    if row is None:
        return refusal("licence_not_found", licence_id)
    return Response(licence_json(row))


# --- usage authorisation codes (用证授权码) ---


class AuthCodeIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    licence_id: str
    holder_code: str
    purpose: str
    department_code: str | None = None  # only this department may use it; any department when absent
    ttl_s: int = 300
    single_use: bool = True


@post("/v1/auth-codes", status_code=201)
async def grant(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    """The holder's consent for a department to use one licence: a code with a TTL (60 s – 1 day)."""
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    client_id, raw = auth
    data = _decode(raw, AuthCodeIn)
    if isinstance(data, Response):
        return data
    if not 60 <= data.ttl_s <= 86400 or not data.purpose.strip() or not data.request_id:
        return refusal("bad_request", "ttl_s must be within [60, 86400]; purpose and request_id are required")
    async with db.acquire() as conn, conn.transaction():
        if (seen := await dedup(conn, client_id, data.request_id, raw)) is not None:
            return seen
        licence = await conn.fetchrow(
            "SELECT * FROM sandbox.elicence_licences WHERE licence_id = $1 AND holder_code = $2",
            data.licence_id,
            data.holder_code,
        )
        if licence is None:
            return refusal("licence_not_found", "no such licence of this holder")
        status = licence_status(licence)
        if status != "valid":
            return refusal(f"licence_{status}", f"the licence is {status}")
        code = "".join(secrets.choice("0123456789") for _ in range(18))
        expires_at = datetime.now(UTC) + timedelta(seconds=data.ttl_s)
        await conn.execute(
            """
            INSERT INTO sandbox.elicence_auth_codes
                (auth_code, licence_id, holder_code, department_code, purpose, single_use, expires_at, client_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            code,
            data.licence_id,
            data.holder_code,
            data.department_code,
            data.purpose,
            data.single_use,
            expires_at,
            client_id,
        )
        body = {
            "auth_code": code,
            "licence_id": data.licence_id,
            "department_code": data.department_code,
            "purpose": data.purpose,
            "single_use": data.single_use,
            "expires_at": expires_at.isoformat(),
        }
        return await answer(conn, client_id, data.request_id, raw, 201, body)


# --- the counter-side check (核验) ---


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    purpose: str
    channel: Channel = "window"
    auth_code: str | None = None
    licence_no: str | None = None
    holder_code: str | None = None
    department_code: str | None = None
    department_name: str | None = None
    hold_ms: int = 0  # keep the transaction open after taking the usage seq (tests of the feed)


@post("/v1/verifications", status_code=200)
async def verify(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    """A department presents an auth code, or a licence number and its holder, and gets the licence's
    verified data — or a refusal. Every check that names a licence is recorded as a use."""
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    client_id, raw = auth
    data = _decode(raw, VerifyIn)
    if isinstance(data, Response):
        return data
    by_code = data.auth_code is not None
    if (
        by_code == bool(data.licence_no and data.holder_code)
        or not data.purpose.strip()
        or not data.request_id
    ):
        return refusal("bad_request", "give either auth_code or licence_no with holder_code, and a purpose")
    department = _department(client_id, data.department_code, data.department_name)
    if department is None:
        return refusal("bad_request", "a platform client names department_code and department_name")
    async with db.acquire() as conn, conn.transaction():
        if (seen := await dedup(conn, client_id, data.request_id, raw)) is not None:
            return seen
        code_row = None
        if by_code:
            code_row = await conn.fetchrow(
                "SELECT * FROM sandbox.elicence_auth_codes WHERE auth_code = $1 FOR UPDATE", data.auth_code
            )
            if code_row is None:
                return await answer(
                    conn,
                    client_id,
                    data.request_id,
                    raw,
                    404,
                    {"err_code": "auth_code_unknown", "err_msg": "no such code"},
                )
            licence = await conn.fetchrow(
                "SELECT * FROM sandbox.elicence_licences WHERE licence_id = $1", code_row["licence_id"]
            )
        else:
            licence = await conn.fetchrow(
                "SELECT * FROM sandbox.elicence_licences WHERE licence_no = $1 AND holder_code = $2",
                data.licence_no,
                data.holder_code,
            )
        if licence is None:
            return await answer(
                conn,
                client_id,
                data.request_id,
                raw,
                404,
                {"err_code": "licence_not_found", "err_msg": "no licence with this number and holder"},
            )
        refused: tuple[str, str] | None = None
        if code_row is not None:
            if code_row["department_code"] and code_row["department_code"] != department[0]:
                refused = ("department_mismatch", "the holder authorised another department")
            elif code_row["expires_at"] <= datetime.now(UTC):
                refused = ("auth_code_expired", "the authorisation code has expired")
            elif code_row["single_use"] and code_row["uses"] > 0:
                refused = ("auth_code_used", "the authorisation code was already used")
        status = licence_status(licence)
        if refused is None and status != "valid":
            refused = (f"licence_{status}", f"the licence is {status}")
        usage_id = await record_use(
            conn,
            licence,
            action="verify",
            result="refused" if refused else "verified",
            refusal_code=refused[0] if refused else None,
            department=department,
            purpose=data.purpose,
            channel=data.channel,
            auth_code=data.auth_code,
            client_id=client_id,
            hold_ms=data.hold_ms,
        )
        if refused:
            body: dict[str, Any] = {"err_code": refused[0], "err_msg": refused[1], "usage_id": usage_id}
            return await answer(conn, client_id, data.request_id, raw, STATUS_OF[refused[0]], body)
        if code_row is not None:
            await conn.execute(
                "UPDATE sandbox.elicence_auth_codes SET uses = uses + 1 WHERE auth_code = $1", data.auth_code
            )
        body = {
            "result": "verified",
            "verification_id": usage_id,
            "verified_at": datetime.now(UTC).isoformat(),
            "department_code": department[0],
            "department_name": department[1],
            "licence": licence_json(licence),
        }
        return await answer(conn, client_id, data.request_id, raw, 200, body)


# --- watermarked copies ---


class CopyIn(msgspec.Struct, forbid_unknown_fields=True):
    request_id: str
    purpose: str
    channel: Channel = "online"
    department_code: str | None = None
    department_name: str | None = None


def watermark(issuer: str, until: date) -> str:
    return (
        f"此件由{issuer}提供，仅供办理政务服务事项时使用，有效期至{until.year}年{until.month}月{until.day}日"
    )


def _svg(licence: asyncpg.Record, mark: str) -> bytes:
    rows = [
        ("证照名称", licence["type_name"]),
        ("证照编号", licence["licence_no"]),
        ("持证主体", licence["holder_name"]),
        ("发证机构", licence["issuer_name"]),
        ("发证日期", licence["issue_date"].isoformat()),
        ("有效期", f"{licence['valid_from']} 至 {licence['valid_to'] or '长期'}"),
    ]
    lines = "".join(
        f'<text x="24" y="{60 + 28 * i}" font-size="16">{escape(k)}：{escape(str(v))}</text>'
        for i, (k, v) in enumerate(rows)
    )
    marks = "".join(
        f'<text x="{-40 + 90 * i}" y="{80 + 70 * i}" font-size="13" fill="#c00" fill-opacity="0.35" '
        f'transform="rotate(-20 {-40 + 90 * i} {80 + 70 * i})">{escape(mark)}</text>'
        for i in range(4)
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="640" height="280">'
        f'<rect width="640" height="280" fill="#fffdf5"/>{lines}{marks}</svg>'
    ).encode()


@post("/v1/licences/{licence_id:str}/copies", status_code=201)
async def copy(
    db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any], licence_id: FromPath[str]
) -> Response[Any]:
    """A watermarked copy (SVG) for one purpose; the copy is a use of the licence and is recorded."""
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    client_id, raw = auth
    data = _decode(raw, CopyIn)
    if isinstance(data, Response):
        return data
    if not data.purpose.strip() or not data.request_id:
        return refusal("bad_request", "purpose and request_id are required")
    department = _department(client_id, data.department_code, data.department_name)
    if department is None:
        return refusal("bad_request", "a platform client names department_code and department_name")
    async with db.acquire() as conn, conn.transaction():
        if (seen := await dedup(conn, client_id, data.request_id, raw)) is not None:
            return seen
        licence = await conn.fetchrow(
            "SELECT * FROM sandbox.elicence_licences WHERE licence_id = $1", licence_id
        )
        if licence is None:
            return refusal("licence_not_found", licence_id)
        status = licence_status(licence)
        if status != "valid":
            return refusal(f"licence_{status}", f"the licence is {status}")
        until = today() + timedelta(days=COPY_VALID_DAYS)
        if licence["valid_to"] is not None:
            until = min(until, licence["valid_to"])
        mark = watermark(licence["issuer_name"], until)
        usage_id = await record_use(
            conn,
            licence,
            action="copy",
            result="issued",
            refusal_code=None,
            department=department,
            purpose=data.purpose,
            channel=data.channel,
            auth_code=None,
            client_id=client_id,
        )
        body = {
            "copy_id": usage_id,
            "licence_id": licence_id,
            "watermark_text": mark,
            "valid_until": until.isoformat(),
            "content_type": "image/svg+xml",
            "content_base64": base64.b64encode(_svg(licence, mark)).decode(),
        }
        return await answer(conn, client_id, data.request_id, raw, 201, body)


# --- the usage report: a commit-ordered feed per holder ---


class UsagesIn(msgspec.Struct, forbid_unknown_fields=True):
    holder_code: str
    holder_type: Literal["111", "001"] = "111"
    since: int = 0
    limit: int = 100


@post("/v1/usages/search", status_code=200)
async def usages(db: NamedDependency[asyncpg.Pool], request: Request[Any, Any, Any]) -> Response[Any]:
    """Every use of the holder's licences after the cursor `since`, oldest first. `seq` is taken from
    a one-row counter in the use's own transaction: seq order is commit order, so a reader that moves
    its cursor to `next_since` never skips a use that commits later."""
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    query = _decode(auth[1], UsagesIn)
    if isinstance(query, Response):
        return query
    if not valid_holder(query.holder_type, query.holder_code):
        return refusal("bad_holder_code", f"not a well-formed holder code of type {query.holder_type}")
    if query.since < 0 or not 1 <= query.limit <= 500:
        return refusal("bad_request", "since >= 0 and limit within [1, 500]")
    rows = await db.fetch(
        """
        SELECT u.*, l.type_code, l.type_name FROM sandbox.elicence_usages u
        JOIN sandbox.elicence_licences l USING (licence_id)
        WHERE u.holder_code = $1 AND u.seq > $2 ORDER BY u.seq LIMIT $3
        """,
        query.holder_code,
        query.since,
        query.limit,
    )
    items = [usage_json(r) for r in rows]
    return Response({"usages": items, "next_since": items[-1]["seq"] if items else query.since})


@get("/v1/usages")
async def all_usages(
    db: NamedDependency[asyncpg.Pool],
    request: Request[Any, Any, Any],
    since: Annotated[int, QueryParameter()] = 0,
    limit: Annotated[int, QueryParameter()] = 100,
) -> Response[Any]:
    """Every holder's uses after `since` (the same seq): one poll for a platform's reconciler.
    Platform clients only."""
    auth = await authenticate(request)
    if isinstance(auth, Response):
        return auth
    if not CLIENTS[auth[0]][1]:
        return refusal("forbidden", "the usage report of every holder is for platform clients")
    if since < 0 or not 1 <= limit <= 500:
        return refusal("bad_request", "since >= 0 and limit within [1, 500]")
    rows = await db.fetch(
        """
        SELECT u.*, l.type_code, l.type_name FROM sandbox.elicence_usages u
        JOIN sandbox.elicence_licences l USING (licence_id) WHERE u.seq > $1 ORDER BY u.seq LIMIT $2
        """,
        since,
        limit,
    )
    items = [usage_json(r) for r in rows]
    return Response({"usages": items, "next_since": items[-1]["seq"] if items else since})


router = Router(path="/elicence", route_handlers=[search, one, grant, verify, copy, usages, all_usages])
