"""Applying for an item, answering 补正, and the resident's view of a case.

The application is checked against the item's guide in that region (form and materials) before
anything is written. Then, re-entrant under the idempotency key: our case row goes in first
(so events about it are recognised whichever way they arrive), the case system is called with
our stable request id, and its answer is applied together with the recorded response.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, Protocol

import asyncpg
import asyncpg.pool
import msgspec

from adapters.cases import callback
from adapters.cases.client import CaseClient, CaseRefused
from adapters.cases.schemas import MaterialRef
from adapters.errors import ProblemError
from auth.principal import Principal
from bff.cases.events import RESULTS, apply_event, reconcile
from bff.cases.schemas import (
    CaseDetail,
    CaseIn,
    CasePage,
    CaseSummary,
    CountdownOut,
    MaterialIn,
    SupplementIn,
    TimelineEntry,
)
from bff.catalogue.schemas import Guide
from bff.catalogue.service import CatalogueService
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.platform.clock import CalendarSource, Suspension, china_date, countdown
from bff.platform.paging import keyset_after, keyset_page
from bff.uploads.service import UploadService

# A plain or a pooled connection: both run the same statements.
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


TITLES: dict[str, tuple[str, str]] = {
    "submitted": ("已提交申请", "Application submitted"),
    "pre_accepted": ("已预受理", "Pre-accepted"),
    "accepted": ("已受理", "Accepted"),
    "not_accepted": ("不予受理", "Not accepted"),
    "supplement_requested": ("补正告知", "Correction requested"),
    "supplement_answered": ("已提交补正", "Correction answered"),
    "special_started": ("特别程序开始", "Special procedure started"),
    "special_ended": ("特别程序结束", "Special procedure ended"),
    "concluded": ("办结", "Concluded"),
    "rated": ("已评价", "Rated"),
}
STEP_TITLES = {"承办": "Handling", "审核": "Review", "批准": "Approval"}


def _title(kind: str, data: dict[str, Any], english: bool) -> str:
    if kind == "step":
        step = str(data.get("step", ""))
        return STEP_TITLES.get(step, step) if english else step
    zh, en = TITLES.get(kind, (kind, kind))
    if kind in ("special_started", "special_ended") and data.get("procedure"):
        return f"{en} ({data['procedure']})" if english else f"{zh}（{data['procedure']}）"
    return en if english else zh


def _invalid(code: str, detail: str, field: str) -> ProblemError:
    return ProblemError(detail, status=422, code=code, extra={"field": field})


async def check_materials(
    uploads: UploadService, person_id: str, guide: Guide, given: list[MaterialIn], *, require_all: bool
) -> list[MaterialRef]:
    by_name = {m.name: m for m in guide.materials}
    refs: list[MaterialRef] = []
    seen: set[str] = set()
    for index, material in enumerate(given):
        field = f"materials[{index}]"
        spec = by_name.get(material.name)
        if spec is None:
            raise _invalid(
                "materials_invalid", f"{field}: the guide asks for no material named {material.name!r}", field
            )
        if material.name in seen:
            raise _invalid("materials_invalid", f"{field}: {material.name!r} is given twice", field)
        seen.add(material.name)
        if (material.elicence is None) == (material.upload_id is None):
            raise _invalid("materials_invalid", f"{field}: give exactly one of elicence and uploadId", field)
        if material.elicence is not None:
            if spec.elicence_type is None or spec.elicence_type != material.elicence.type:
                raise _invalid(
                    "materials_invalid",
                    f"{field}: no e-licence of that type can stand in for {material.name!r}",
                    field,
                )
            refs.append(
                MaterialRef(
                    name=material.name,
                    kind="elicence",
                    reference=f"{material.elicence.type}:{material.elicence.number}",
                )
            )
        else:
            upload = await uploads.owned_upload(person_id, material.upload_id)
            if upload is None:
                # Someone else's upload looks exactly like a missing one.
                raise _invalid(
                    "materials_invalid", f"{field}: no upload {str(material.upload_id)[:64]}", field
                )
            refs.append(MaterialRef(name=material.name, kind="upload", reference=str(upload)))
    if require_all:
        missing = [
            m.name
            for m in guide.materials
            if m.required and m.name not in seen and m.name != "授权委托书及受托人身份证明"
        ]
        if missing:
            raise _invalid(
                "materials_invalid", "missing required materials: " + "、".join(missing), "materials"
            )
    return refs


class RatingRef(msgspec.Struct, frozen=True):
    id: uuid.UUID
    level: int
    created_at: datetime


class Ratings(Protocol):
    """What the case view needs of the ratings domain (which depends on cases, not the reverse):
    wired in by the composition root."""

    async def of_case(self, conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> RatingRef | None: ...


class CaseService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: CaseClient,
        catalogue: CatalogueService,
        uploads: UploadService,
        calendar: CalendarSource,
        *,
        notify_url: str,
        webhook_secret: str,
        webhook_window_s: int,
    ) -> None:
        self.pool = pool
        self.client = client
        self.catalogue = catalogue
        self.uploads = uploads
        self.calendar = calendar
        self.notify_url = notify_url or None
        self.webhook_secret = webhook_secret
        self.webhook_window_s = webhook_window_s
        self.ratings: Ratings | None = None

    # --- reading ---

    async def own(self, principal: Principal, case_id: str) -> asyncpg.Record:
        """Read port: the caller's submitted case, else a 404 (another resident's is audited)."""
        row = await self.pool.fetchrow("SELECT * FROM bff.cases WHERE id = $1", parse_uuid(case_id, "case"))
        if row is not None and row["project_no"] is None:
            row = None if row["person_id"] == principal.person_id else row  # not submitted: not yet a case
        return await owned(self.pool, principal, "case", case_id, row)

    async def mine(self, principal: Principal, limit: int, cursor: str | None) -> CasePage:
        moment, ident = keyset_after(cursor)
        rows = await self.pool.fetch(
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
        return CasePage(items=[await self.summary(self.pool, r) for r in page], next_cursor=following)

    async def view(self, principal: Principal, case_id: str, *, english: bool) -> CaseDetail:
        row = await self.own(principal, case_id)
        return await self.detail(self.pool, row["id"], english=english)

    async def mark_rated(self, conn: Conn, case_id: uuid.UUID) -> None:
        """Write port for the ratings domain, inside its transaction: the case's last state."""
        await conn.execute("UPDATE bff.cases SET status = 'rated', updated_at = now() WHERE id = $1", case_id)

    # --- the case system's deliveries ---

    async def receive_webhook(self, headers: Any, body: bytes) -> str:
        event = callback.verify(headers, body, secret=self.webhook_secret, window_s=self.webhook_window_s)
        async with self.pool.acquire() as conn, conn.transaction():
            return await apply_event(conn, event, "webhook")

    async def reconcile(self) -> int:
        return await reconcile(self.pool, self.client)

    # --- applying ---

    async def apply(self, ctx: IdemContext, principal: Principal, data: CaseIn) -> Recorded[CaseDetail]:
        case_id = ctx.request_id
        row = await self.pool.fetchrow("SELECT * FROM bff.cases WHERE id = $1", case_id)
        guide = await self.catalogue.guide(data.item_code, data.region_code)
        if row is None:
            if not guide.channels.online:
                raise ProblemError(
                    "this item is handled in the hall only", status=422, code="item_not_online"
                )
            if data.form.delivery_wanted and not guide.channels.mailable:
                raise _invalid(
                    "form_invalid",
                    "form.deliveryWanted: results of this item cannot be mailed",
                    "form.deliveryWanted",
                )
            if data.form.delivery_wanted and not data.form.delivery_address:
                raise _invalid(
                    "form_invalid",
                    "form.deliveryAddress: required when deliveryWanted",
                    "form.deliveryAddress",
                )
            await check_materials(self.uploads, principal.person_id, guide, data.materials, require_all=True)
            row = await self.pool.fetchrow(
                """
                INSERT INTO bff.cases (id, person_id, request_id, item_code, item_name, region_code, task_code,
                                       channel, promise_days, status, form, materials)
                VALUES ($1, $2, $1, $3, $4, $5, $6, $7, $8, 'submitting', $9, $10)
                ON CONFLICT (id) DO NOTHING RETURNING *
                """,
                case_id,
                principal.person_id,
                guide.code,
                guide.name,
                data.region_code,
                guide.task_code,
                "hall" if principal.channel == "kiosk" else "online",
                guide.time_limits.promised_working_days,
                msgspec.to_builtins(data.form),
                msgspec.to_builtins(data.materials),
            ) or await self.pool.fetchrow("SELECT * FROM bff.cases WHERE id = $1", case_id)
        assert row is not None
        refs = await check_materials(
            self.uploads, principal.person_id, guide, data.materials, require_all=False
        )
        try:
            application = await self.client.apply(
                request_id=str(case_id),
                catalog_code=guide.code,
                task_code=guide.task_code,
                region_code=data.region_code,
                applicant_ref=principal.person_id,
                channel=row["channel"],
                form=msgspec.to_builtins(data.form),
                materials=refs,
                notify_url=self.notify_url,
            )
        except CaseRefused as exc:
            await self.pool.execute("DELETE FROM bff.cases WHERE id = $1 AND project_no IS NULL", case_id)
            raise ProblemError(
                f"the case system refused: {exc.detail}", status=422, code="case_refused"
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE bff.cases SET project_no = $2 WHERE id = $1 AND project_no IS NULL",
                case_id,
                application.project_no,
            )
            for event in application.events:
                await apply_event(conn, event, "reply")
            detail = await self.detail(conn, case_id, english=False)
            return await ctx.finish(conn, detail)

    async def supplement(
        self, ctx: IdemContext, principal: Principal, case: asyncpg.Record, data: SupplementIn
    ) -> Recorded[CaseDetail]:
        open_id = await self.open_supplement(self.pool, case["id"])
        done = await self.pool.fetchval(
            """
            SELECT 1 FROM bff.case_events WHERE case_id = $1 AND type = 'supplement_answered'
               AND data ->> 'supplement_id' = $2
            """,
            case["id"],
            data.supplement_id,
        )
        if not done and (open_id is None or open_id != data.supplement_id):
            raise ProblemError(
                "there is no open correction request with that id", status=409, code="no_open_supplement"
            )
        guide = await self.catalogue.guide(case["item_code"], case["region_code"])
        refs = await check_materials(
            self.uploads, principal.person_id, guide, data.materials, require_all=False
        )
        try:
            reply = await self.client.supplement(
                request_id=str(ctx.request_id),
                project_no=case["project_no"],
                supplement_id=data.supplement_id,
                answer=data.answer,
                materials=refs,
            )
        except CaseRefused as exc:
            raise ProblemError(exc.detail, status=409, code="no_open_supplement") from None
        async with self.pool.acquire() as conn, conn.transaction():
            await apply_event(conn, reply.event, "reply")
            return await ctx.finish(conn, await self.detail(conn, case["id"], english=False))

    @staticmethod
    async def open_supplement(conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> str | None:
        rows = await conn.fetch(
            "SELECT type, data FROM bff.case_events WHERE case_id = $1 AND type LIKE 'supplement_%' ORDER BY case_seq",
            case_id,
        )
        open_ids: dict[str, bool] = {}
        for row in rows:
            sid = str(row["data"].get("supplement_id"))
            open_ids[sid] = row["type"] == "supplement_requested" and open_ids.get(sid, True)
        pending = [sid for sid, is_open in open_ids.items() if is_open]
        return pending[-1] if pending else None

    async def _rating(self, conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> RatingRef | None:
        return await self.ratings.of_case(conn, case_id) if self.ratings is not None else None

    async def summary(self, conn: Conn | asyncpg.Pool, row: asyncpg.Record) -> CaseSummary:
        rated = row["status"] == "rated" or await self._rating(conn, row["id"]) is not None
        status = "rated" if rated else row["status"]
        return CaseSummary(
            id=str(row["id"]),
            project_no=row["project_no"],
            item_code=row["item_code"],
            item_name=row["item_name"],
            region_code=row["region_code"],
            status=status,  # type: ignore[arg-type]  # a CaseStatus by construction (events.py)
            result=row["result_code"],
            upstream_status_code=row["upstream_status_code"],
            submitted_at=row["created_at"].astimezone(UTC).isoformat(),
            rating_due=row["status"] == "concluded" and not rated,
            open_supplement_id=await self.open_supplement(conn, row["id"]),
        )

    async def detail(
        self,
        conn: Conn | asyncpg.Pool,
        case_id: uuid.UUID,
        *,
        english: bool,
        today: date | None = None,
    ) -> CaseDetail:
        row = await conn.fetchrow("SELECT * FROM bff.cases WHERE id = $1", case_id)
        assert row is not None
        events = await conn.fetch(
            "SELECT case_seq, type, occurred_at, data FROM bff.case_events WHERE case_id = $1 ORDER BY case_seq",
            case_id,
        )
        timeline: list[TimelineEntry] = []
        for event in events:
            data = dict(event["data"])
            officer = data.pop("officer", None)
            opinion = data.pop("opinion", None) or None
            if event["type"] == "concluded" and "result_code" in data:
                data["result"] = RESULTS.get(str(data["result_code"]))
            timeline.append(
                TimelineEntry(
                    seq=event["case_seq"],
                    at=event["occurred_at"].astimezone(UTC).isoformat(),
                    kind=event["type"],
                    title=_title(event["type"], data, english),
                    officer=officer,
                    opinion=opinion,
                    details=data or None,
                )
            )
        rating = await self._rating(conn, case_id)
        if rating is not None:
            timeline.append(
                TimelineEntry(
                    seq=(timeline[-1].seq if timeline else 0) + 1,
                    at=rating.created_at.astimezone(UTC).isoformat(),
                    kind="rated",
                    title=_title("rated", {}, english),
                    details={"level": rating.level},
                )
            )
        clock, deemed = await self._clock(events, row["promise_days"], today)
        return CaseDetail(
            case=await self.summary(conn, row),
            timeline=timeline,
            countdown=clock,
            deemed_accepted_on=deemed,
            rating_id=str(rating.id) if rating else None,
        )

    async def _clock(
        self, events: list[asyncpg.Record], promise_days: int, today: date | None
    ) -> tuple[CountdownOut | None, str | None]:
        calendar = await self.calendar.get()
        today = today or china_date(datetime.now(UTC))
        by_type: dict[str, list[asyncpg.Record]] = {}
        for event in events:
            by_type.setdefault(event["type"], []).append(event)
        accepted = by_type.get("accepted")
        if not accepted:
            submitted = by_type.get("submitted")
            if submitted and not by_type.get("not_accepted") and not by_type.get("supplement_requested"):
                # 行政许可法 art. 32: no 补正 notice within 5 working days -> deemed accepted.
                start = china_date(submitted[0]["occurred_at"])
                return None, calendar.add_working_days(start, 5).isoformat()
            return None, None
        accepted_on = china_date(accepted[0]["occurred_at"])
        suspensions: list[Suspension] = []
        answered = {str(e["data"].get("supplement_id")): e for e in by_type.get("supplement_answered", [])}
        for request in by_type.get("supplement_requested", []):
            if request["case_seq"] < accepted[0]["case_seq"]:
                continue  # before acceptance the clock had not started
            end = answered.get(str(request["data"].get("supplement_id")))
            suspensions.append(
                Suspension(
                    kind="supplement",
                    start=china_date(request["occurred_at"]),
                    end=china_date(end["occurred_at"]) if end else None,
                )
            )
        ends = list(by_type.get("special_ended", []))
        for start_event in by_type.get("special_started", []):
            end_event = next((e for e in ends if e["case_seq"] > start_event["case_seq"]), None)
            if end_event is not None:
                ends.remove(end_event)
            suspensions.append(
                Suspension(
                    kind="special_procedure",
                    start=china_date(start_event["occurred_at"]),
                    end=china_date(end_event["occurred_at"]) if end_event else None,
                )
            )
        concluded = by_type.get("concluded")
        if concluded:
            today = min(today, china_date(concluded[0]["occurred_at"]))
        result = countdown(calendar, accepted_on, promise_days, suspensions, today)
        return (
            CountdownOut(
                promised_working_days=result.promised_working_days,
                used_working_days=result.used_working_days,
                remaining_working_days=result.remaining_working_days,
                suspended_working_days=result.suspended_working_days,
                paused=result.paused,
                overdue=result.overdue,
                promise_date=result.promise_date.isoformat() if result.promise_date else None,
            ),
            None,
        )
