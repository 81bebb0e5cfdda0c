"""Routes of the case domain: apply, list, detail with one timeline, 补正, rating, uploads, and
the case system's webhook."""

from __future__ import annotations

import hmac
import time
from hashlib import sha256
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from adapters.cases.schemas import CaseEvent
from adapters.errors import ProblemError
from auth.guards import residents_only
from auth.principal import Principal
from bff.cases import uploads
from bff.cases.access import owned, parse_uuid
from bff.cases.events import apply_event
from bff.cases.schemas import CaseDetail, CaseIn, CasePage, SupplementIn, UploadOut
from bff.cases.service import CaseService
from bff.idempotency import IdempotencyStore
from bff.platform.logs import get_logger
from bff.platform.paging import keyset_after, keyset_page
from bff.platform.problems import register_titles
from bff.platform.settings import Settings
from bff.ratings.service import RatingIn, RatingOut, RatingService

log = get_logger("bff.cases")
register_titles({"webhook_rejected": ("回调校验失败", "The webhook delivery was rejected")})


def _english(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("accept-language", "").lower().startswith("en")


async def _own_case(pool: asyncpg.Pool, principal: Principal, case_id: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM bff.cases WHERE id = $1", parse_uuid(case_id, "case"))
    if row is not None and row["project_no"] is None:
        row = None if row["person_id"] == principal.person_id else row  # not submitted: not yet a case
    return await owned(pool, principal, "case", case_id, row)


class CaseController(Controller):
    path = "/cases"
    tags = ["cases"]
    guards = [residents_only]

    @post("", summary="Apply for an item (form + materials; e-licences in place of uploads)", status_code=201)
    async def apply(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        cases: NamedDependency[CaseService],
        data: Annotated[CaseIn, Body()],
    ) -> Response[bytes]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: cases.apply(ctx, principal, data)
        )

    @get("", summary="My cases, newest first")
    async def list_cases(
        self,
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        cases: NamedDependency[CaseService],
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> CasePage:
        moment, ident = keyset_after(cursor)
        rows = await db_pool.fetch(
            """
            SELECT * FROM bff.cases
            WHERE person_id = $1 AND project_no IS NOT NULL
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
            ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            principal.person_id,
            moment,
            ident,
            limit + 1,
        )
        page, following = keyset_page(rows, limit, "created_at")
        return CasePage(items=[await cases.summary(db_pool, r) for r in page], next_cursor=following)

    @get("/{case_id:str}", summary="One case: one timeline, the promised date, remaining working days")
    async def get_case(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        cases: NamedDependency[CaseService],
        case_id: FromPath[str],
    ) -> CaseDetail:
        row = await _own_case(db_pool, principal, case_id)
        return await cases.detail(db_pool, row["id"], english=_english(request))

    @post("/{case_id:str}/supplements", summary="Answer a 补正 request", status_code=201)
    async def supplement(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        idempotency: NamedDependency[IdempotencyStore],
        cases: NamedDependency[CaseService],
        case_id: FromPath[str],
        data: Annotated[SupplementIn, Body()],
    ) -> Response[bytes]:
        row = await _own_case(db_pool, principal, case_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: cases.supplement(ctx, principal, row, data)
        )

    @post("/{case_id:str}/rating", summary="好差评: rate a concluded case once", status_code=201)
    async def rate(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        idempotency: NamedDependency[IdempotencyStore],
        ratings: NamedDependency[RatingService],
        case_id: FromPath[str],
        data: Annotated[RatingIn, Body()],
    ) -> Response[bytes]:
        row = await _own_case(db_pool, principal, case_id)
        return await idempotency.run(request, principal.person_id, lambda ctx: ratings.rate(ctx, row, data))


class RatingController(Controller):
    path = "/ratings"
    tags = ["cases"]
    guards = [residents_only]

    @get("/{rating_id:str}", summary="My rating and, for a bad one, its follow-up")
    async def get_rating(
        self,
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        ratings: NamedDependency[RatingService],
        rating_id: FromPath[str],
    ) -> RatingOut:
        row = await db_pool.fetchrow(
            "SELECT * FROM bff.ratings WHERE id = $1", parse_uuid(rating_id, "rating")
        )
        row = await owned(db_pool, principal, "rating", rating_id, row)
        return await ratings.view(row)


def upload_out(row: asyncpg.Record | None) -> UploadOut:
    assert row is not None
    return UploadOut(
        id=str(row["id"]),
        file_name=row["file_name"],
        media_type=row["media_type"],
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        created_at=row["created_at"].isoformat(),
    )


def upload_dir(settings: Settings) -> Path:
    return Path(settings.upload_dir) if settings.upload_dir else Path(settings.data_dir) / "uploads"


class UploadController(Controller):
    path = "/uploads"
    tags = ["cases"]
    guards = [residents_only]

    @post(
        "",
        summary="Upload one material (raw body; PDF, JPEG or PNG)",
        status_code=201,
        request_max_body_size=None,  # bounded per route below (the API-wide limit is smaller)
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        db_pool: NamedDependency[asyncpg.Pool],
        settings: NamedDependency[Settings],
        name: Annotated[str, QueryParameter(min_length=1, max_length=120)],
    ) -> Response[bytes]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.upload_max_bytes:
            raise ProblemError(
                f"files are limited to {settings.upload_max_bytes} bytes",
                status=413,
                code="payload_too_large",
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.upload_max_bytes:
                raise ProblemError(
                    f"files are limited to {settings.upload_max_bytes} bytes",
                    status=413,
                    code="payload_too_large",
                )
            chunks.append(chunk)
        content = b"".join(chunks)
        # The idempotency fingerprint reads the body: hand it the bytes we already consumed.
        request._body = request._connection_state.body = content
        media_type = uploads.check(content, request.headers.get("content-type", ""), name)

        async def operation(ctx: Any) -> Any:
            upload_id = ctx.request_id
            digest = await uploads.store(upload_dir(settings), upload_id.hex, content)
            async with db_pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    """
                    INSERT INTO bff.uploads (id, person_id, file_name, media_type, size_bytes, sha256, storage_key)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (id) DO UPDATE SET file_name = bff.uploads.file_name RETURNING *
                    """,
                    upload_id,
                    principal.person_id,
                    name,
                    media_type,
                    len(content),
                    digest,
                    upload_id.hex,
                )
                return await ctx.record(conn, 201, upload_out(row))

        return await idempotency.run(request, principal.person_id, operation)

    @get("/{upload_id:str}", summary="One of my uploads (metadata; the file is never served back)")
    async def get_upload(
        self,
        principal: NamedDependency[Principal],
        db_pool: NamedDependency[asyncpg.Pool],
        upload_id: FromPath[str],
    ) -> UploadOut:
        row = await db_pool.fetchrow(
            "SELECT * FROM bff.uploads WHERE id = $1", parse_uuid(upload_id, "upload")
        )
        return upload_out(await owned(db_pool, principal, "upload", upload_id, row))


class CaseWebhookController(Controller):
    """The case system's signed deliveries. Not keyed by Idempotency-Key: the event id is the key."""

    path = "/case-events"
    tags = ["cases"]

    @post(
        "",
        summary="Case system webhook (HMAC-SHA256 over timestamp.body)",
        status_code=200,
        exclude_from_auth=True,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        db_pool: NamedDependency[asyncpg.Pool],
        settings: NamedDependency[Settings],
    ) -> dict[str, str]:
        body = await request.body()
        timestamp = request.headers.get("x-case-timestamp", "")
        signature = request.headers.get("x-case-signature", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > settings.case_webhook_window_s:
            log.warning("case_webhook_rejected", reason="timestamp")
            raise ProblemError("timestamp missing or outside the window", status=401, code="webhook_rejected")
        expected = (
            "sha256="
            + hmac.new(
                settings.case_webhook_secret.encode(), timestamp.encode() + b"." + body, sha256
            ).hexdigest()
        )
        if not hmac.compare_digest(expected, signature):
            log.warning("case_webhook_rejected", reason="signature")
            raise ProblemError("bad signature", status=401, code="webhook_rejected")
        try:
            event = msgspec.json.decode(body, type=CaseEvent)
        except msgspec.ValidationError as exc:
            raise ProblemError(f"not a case event: {exc}", status=400, code="validation_failed") from None
        async with db_pool.acquire() as conn, conn.transaction():
            outcome = await apply_event(conn, event, "webhook")
        return {"outcome": outcome}
