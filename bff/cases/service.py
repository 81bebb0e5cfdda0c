"""Applying for an item, answering 补正, and the resident's view of a case.

The application is checked against the item's guide in that region (form and materials) before
anything is written. Then, re-entrant under the idempotency key: our case row goes in first
(so events about it are recognised whichever way they arrive), the case system is called with
our stable request id, and its answer is applied together with the recorded response.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

import asyncpg
import asyncpg.pool
import msgspec

from adapters.cases import callback
from adapters.cases.client import CaseClient, CaseRefused
from adapters.cases.schemas import Application, MaterialRef, SupplementReply
from adapters.errors import BadUpstreamAnswer, NotSent, ProblemError, UpstreamUnavailable
from adapters.pii import mask_id_number
from auth import acting
from auth.principal import Principal
from bff.cases.events import RESULTS, CaseEventHook, apply_event, reconcile
from bff.cases.schemas import (
    CaseDetail,
    CaseFeeLine,
    CaseFeeOut,
    CaseIn,
    CasePage,
    CaseSummary,
    CountdownOut,
    FeeNotice,
    MaterialIn,
    MaterialUsed,
    SupplementIn,
    TimelineEntry,
)
from bff.catalogue.schemas import Guide
from bff.catalogue.service import CatalogueService
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.platform.clock import CHINA, CalendarSource, Suspension, china_date, countdown
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
    "fee_issued": ("缴费通知", "Fee notice issued"),
    "fee_paid": ("已缴费", "Fee paid"),
    "receipt_issued": ("已开具财政电子票据", "Electronic receipt issued"),
    "refund_requested": ("退费申请", "Refund requested"),
    "rated": ("已评价", "Rated"),
}
STEP_TITLES = {"承办": "Handling", "审核": "Review", "批准": "Approval"}
# Every code a resident sees, labelled in both languages (DOMAIN.md: 办结结果 and the state machine).
RESULT_LABELS = {
    "issued": ("出证办结", "Concluded, licence issued"),
    "returned": ("退回", "Returned"),
    "voided": ("作废", "Voided"),
    "deleted": ("删除", "Deleted"),
    "transferred": ("转报", "Transferred"),
    "supplement_timeout": ("补正不来", "Supplement not provided"),
    "done": ("办结", "Concluded"),
}
STATUS_LABELS = {
    "submitting": ("提交中", "Submitting"),
    "submitted": ("已提交", "Submitted"),
    "pre_accepted": ("预受理", "Pre-accepted"),
    "accepted": ("已受理", "Accepted"),
    "not_accepted": ("不予受理", "Not accepted"),
    "in_progress": ("办理中", "In progress"),
    "awaiting_supplement": ("待补正", "Awaiting supplement"),
    "special_procedure": ("特别程序", "Special procedure"),
    "concluded": ("已办结", "Concluded"),
    "rated": ("已评价", "Rated"),
}


def label(labels: dict[str, tuple[str, str]], code: str | None, english: bool) -> str | None:
    if code is None:
        return None
    zh, en = labels.get(code, (code, code))
    return en if english else zh


def display_time(moment: datetime) -> str:
    """A display field: China time with its offset (`2026-12-01T09:30:00+08:00`)."""
    return moment.astimezone(CHINA).isoformat()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def timeline_details(data: dict[str, Any], english: bool) -> dict[str, Any] | None:
    """Event details as the API shows them: camelCase keys, each code with its label beside it."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[_camel(key)] = value
        if key == "result" and isinstance(value, str):
            out["resultLabel"] = label(RESULT_LABELS, value, english)
    return out or None


def _title(kind: str, data: dict[str, Any], english: bool) -> str:
    if kind == "step":
        step = str(data.get("step", ""))
        return STEP_TITLES.get(step, step) if english else step
    zh, en = TITLES.get(kind, (kind, kind))
    if kind in ("special_started", "special_ended") and data.get("procedure"):
        return f"{en} ({data['procedure']})" if english else f"{zh}（{data['procedure']}）"
    return en if english else zh


def _invalid(code: str, detail: str, field: str, zh: str) -> ProblemError:
    return ProblemError(detail, status=422, code=code, extra={"field": field}, detail_zh=zh)


def _material_used(given: dict[str, Any]) -> MaterialUsed:
    """One material of the stored application (its camelCase `MaterialIn` form)."""
    licence = given.get("elicence")
    if licence:
        return MaterialUsed(
            name=given["name"],
            kind="elicence",
            elicence_type=licence["type"],
            licence_number=mask_id_number(licence["number"]),
        )
    return MaterialUsed(name=given["name"], kind="upload", upload_id=given.get("uploadId"))


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
                "materials_invalid",
                f"{field}: the guide asks for no material named {material.name!r}",
                field,
                f"{field}：办事指南未要求名为“{material.name}”的材料",
            )
        if material.name in seen:
            raise _invalid(
                "materials_invalid",
                f"{field}: {material.name!r} is given twice",
                field,
                f"{field}：“{material.name}”重复提交",
            )
        seen.add(material.name)
        if (material.elicence is None) == (material.upload_id is None):
            raise _invalid(
                "materials_invalid",
                f"{field}: give exactly one of elicence and uploadId",
                field,
                f"{field}：elicence 与 uploadId 须且只须给出一个",
            )
        if material.elicence is not None:
            if spec.elicence_type is None or spec.elicence_type != material.elicence.type:
                raise _invalid(
                    "materials_invalid",
                    f"{field}: no e-licence of that type can stand in for {material.name!r}",
                    field,
                    f"{field}：该类电子证照不能替代“{material.name}”",
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
                    "materials_invalid",
                    f"{field}: no upload {str(material.upload_id)[:64]}",
                    field,
                    f"{field}：未找到上传文件 {str(material.upload_id)[:64]}",
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
                "materials_invalid",
                "missing required materials: " + "、".join(missing),
                "materials",
                "缺少必需材料：" + "、".join(missing),
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


class CaseTodo(msgspec.Struct, frozen=True, kw_only=True):
    """What one case asks of its resident now (home's read port)."""

    case_id: str
    project_no: str
    item_name: str
    status: str
    updated_at: datetime
    open_supplement_id: str | None
    fee: FeeNotice | None  # the newest fee notice, only while it is still owed
    rating_due: bool


class TimelineStep(msgspec.Struct, frozen=True):
    """One entry another domain adds to a case's timeline: a payment step (order created, paid,
    refunded …) or a delivery step (the shipment, each tracking event)."""

    at: datetime
    kind: str
    title_zh: str
    title_en: str
    details: dict[str, Any]


class PaymentRef(msgspec.Struct, frozen=True):
    id: uuid.UUID
    fee_id: str
    status: str
    amount_fen: int
    refunded_fen: int


class Payments(Protocol):
    """What the case view needs of the payments domain (which depends on cases): the payment
    steps for the timeline and the fee's current order. Wired in by the composition root."""

    async def case_timeline(self, conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> list[TimelineStep]: ...

    async def current_for_fee(self, conn: Conn | asyncpg.Pool, fee_id: str) -> PaymentRef | None: ...


def _merge(timeline: list[TimelineEntry], steps: list[TimelineStep], english: bool) -> list[TimelineEntry]:
    """Payment steps joined into the case's timeline by time, the case events keeping their own
    (case_seq) order: a merge, never a re-sort of what the case system sequenced."""
    if not steps:
        return timeline
    next_seq = max((t.seq for t in timeline), default=0) + 1
    extra: list[TimelineEntry] = []
    for step in sorted(steps, key=lambda s: s.at):
        extra.append(
            TimelineEntry(
                seq=next_seq,
                at=display_time(step.at),
                kind=step.kind,
                title=step.title_en if english else step.title_zh,
                details=step.details or None,
            )
        )
        next_seq += 1
    merged: list[TimelineEntry] = []
    queue = list(extra)
    for entry in timeline:
        moment = datetime.fromisoformat(entry.at)
        while queue and datetime.fromisoformat(queue[0].at) < moment:
            merged.append(queue.pop(0))
        merged.append(entry)
    return merged + queue


class Deliveries(Protocol):
    """What the case view needs of the delivery domain (which depends on cases, not the reverse):
    wired in by the composition root."""

    async def timeline_of(self, conn: Conn | asyncpg.Pool, case_id: uuid.UUID) -> list[TimelineStep]: ...


# A case's states once its result is mailed (DOMAIN.md: concluded -> delivering -> delivered).
DeliveryState = Literal["concluded", "delivering", "delivered"]
_DELIVERY_FROM: dict[str, tuple[str, ...]] = {
    "delivering": ("concluded", "delivering"),
    "delivered": ("concluded", "delivering", "delivered"),
    # A returned parcel: the result is back at the hall, to collect or to mail again.
    "concluded": ("delivering",),
}


# Read port onto identity: the resident's verified name and phone (decrypted), for a form that leaves them out.
ContactOf = Callable[[str], Awaitable[tuple[str | None, str | None]]]


class CaseService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: CaseClient,
        catalogue: CatalogueService,
        uploads: UploadService,
        calendar: CalendarSource,
        *,
        contact_of: ContactOf | None = None,
        notify_url: str,
        webhook_secret: str,
        webhook_window_s: int,
        feed_lookback: int = 500,
    ) -> None:
        self.feed_lookback = feed_lookback
        self.contact_of = contact_of
        self.pool = pool
        self.client = client
        self.catalogue = catalogue
        self.uploads = uploads
        self.calendar = calendar
        self.notify_url = notify_url or None
        self.webhook_secret = webhook_secret
        self.webhook_window_s = webhook_window_s
        self.ratings: Ratings | None = None
        self.payments: Payments | None = None
        self.event_hook: CaseEventHook | None = None
        self.deliveries: Deliveries | None = None

    # --- reading ---

    async def own(self, principal: Principal, case_id: str) -> asyncpg.Record:
        """Read port: the caller's submitted case, else a 404 (another resident's is audited)."""
        row = await self.pool.fetchrow("SELECT * FROM bff.cases WHERE id = $1", parse_uuid(case_id, "case"))
        if row is not None and row["project_no"] is None:
            row = None if row["person_id"] == principal.person_id else row  # not submitted: not yet a case
        row = await owned(self.pool, principal, "case", case_id, row)
        acting.check_item(principal, row["item_code"])
        return row

    async def mine(
        self, principal: Principal, limit: int, cursor: str | None, *, english: bool = False
    ) -> CasePage:
        moment, ident = keyset_after(cursor)
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.cases
            WHERE person_id = $1 AND project_no IS NOT NULL
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              AND ($5::text[] IS NULL OR item_code = ANY($5))
            ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            principal.person_id,
            moment,
            ident,
            limit + 1,
            acting.within_items(principal),
        )
        page, following = keyset_page(rows, limit, "created_at")
        items = []
        for row in page:
            events = await self.pool.fetch(
                "SELECT case_seq, type, occurred_at, data FROM bff.case_events WHERE case_id = $1 ORDER BY case_seq",
                row["id"],
            )
            clock, _ = await self._clock(events, row["promise_days"], None)
            items.append(await self.summary(self.pool, row, english=english, clock=clock))
        return CasePage(items=items, next_cursor=following)

    async def todos(self, person_id: str, limit: int = 50) -> list[CaseTodo]:
        """Read port for home: the resident's submitted cases changed most recently, each with what
        it asks of the resident now (an open 补正, a fee still owed, a rating due)."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.cases WHERE person_id = $1 AND project_no IS NOT NULL
            ORDER BY updated_at DESC, id DESC LIMIT $2
            """,
            person_id,
            limit,
        )
        out = []
        for row in rows:
            fee = await self._fee(self.pool, row)
            if fee is not None:
                current = (
                    await self.payments.current_for_fee(self.pool, fee.fee_id) if self.payments else None
                )
                if fee.paid_upstream or (current is not None and current.status not in ("created", "paying")):
                    fee = None
            rated = row["status"] == "rated" or await self._rating(self.pool, row["id"]) is not None
            out.append(
                CaseTodo(
                    case_id=str(row["id"]),
                    project_no=str(row["project_no"]),
                    item_name=row["item_name"],
                    status=row["status"],
                    updated_at=row["updated_at"],
                    open_supplement_id=await self.open_supplement(self.pool, row["id"]),
                    fee=fee,
                    rating_due=row["status"] in ("concluded", "delivering", "delivered") and not rated,
                )
            )
        return out

    async def detail_of(self, case_id: uuid.UUID, *, english: bool) -> CaseDetail | None:
        """Read port (life-event applications, which own the case ids they asked for): the case as
        the resident sees it, None when no case row exists (never sent, refused, or voided)."""
        if await self.pool.fetchval("SELECT 1 FROM bff.cases WHERE id = $1", case_id) is None:
            return None
        return await self.detail(self.pool, case_id, english=english)

    async def view(self, principal: Principal, case_id: str, *, english: bool) -> CaseDetail:
        row = await self.own(principal, case_id)
        return await self.detail(self.pool, row["id"], english=english)

    async def open_fee(self, principal: Principal, case_id: str) -> FeeNotice | None:
        """Read port for payments: the caller's case (404 otherwise) and its newest fee notice (缴费通知)
        as the case system issued it, with whether the case system already saw it paid."""
        row = await self.own(principal, case_id)
        return await self._fee(self.pool, row)

    async def _fee(self, conn: Conn | asyncpg.Pool, row: asyncpg.Record) -> FeeNotice | None:
        issued = await conn.fetchrow(
            """
            SELECT data FROM bff.case_events WHERE case_id = $1 AND type = 'fee_issued'
            ORDER BY case_seq DESC LIMIT 1
            """,
            row["id"],
        )
        if issued is None:
            return None
        data = issued["data"]
        paid = await conn.fetchval(
            "SELECT 1 FROM bff.case_events WHERE case_id = $1 AND type = 'fee_paid' AND data ->> 'fee_id' = $2",
            row["id"],
            str(data["fee_id"]),
        )
        return FeeNotice(
            case_id=row["id"],
            project_no=row["project_no"],
            item_name=row["item_name"],
            person_id=row["person_id"],
            fee_id=str(data["fee_id"]),
            total_fen=int(data["total_fen"]),
            lines=[CaseFeeLine(name=str(x["name"]), amount_fen=int(x["amount_fen"])) for x in data["lines"]],
            payable_by=str(data["payable_by"]),
            payment_code=str(data["payment_code"]),
            issuing_department=str(data.get("issuing_department", "")),
            paid_upstream=paid is not None,
        )

    async def report_fee_paid(
        self,
        *,
        request_id: str,
        fee_id: str,
        out_trade_no: str,
        transaction_id: str,
        amount_fen: int,
        paid_at: str,
    ) -> str:
        """Write port for payments: tell the case system a fee was paid and apply what it answers
        (fee_paid, receipt_issued). 'reported', or 'refused:<reason>' for a permanent no."""
        try:
            reply = await self.client.fee_paid(
                request_id=request_id,
                fee_id=fee_id,
                out_trade_no=out_trade_no,
                transaction_id=transaction_id,
                amount_fen=amount_fen,
                paid_at=paid_at,
            )
        except CaseRefused as exc:
            return f"refused:{exc.reason}"
        async with self.pool.acquire() as conn, conn.transaction():
            for event in reply.events:
                await apply_event(conn, event, "reply", self.event_hook)
        return "reported"

    async def mark_rated(self, conn: Conn, case_id: uuid.UUID) -> None:
        """Write port for the ratings domain, inside its transaction: the case's last state."""
        await conn.execute("UPDATE bff.cases SET status = 'rated', updated_at = now() WHERE id = $1", case_id)

    async def mark_delivery(self, conn: Conn, case_id: uuid.UUID, state: DeliveryState) -> bool:
        """Write port for the delivery domain, inside its transaction: the case's mailing state.
        Only forward from where mailing can stand (a rated case keeps showing `rated`)."""
        done = await conn.fetchval(
            "UPDATE bff.cases SET status = $2, updated_at = now() WHERE id = $1 AND status = ANY($3::text[]) RETURNING 1",
            case_id,
            state,
            list(_DELIVERY_FROM[state]),
        )
        return done is not None

    # --- the case system's deliveries ---

    async def receive_webhook(self, headers: Any, body: bytes) -> str:
        event = callback.verify(headers, body, secret=self.webhook_secret, window_s=self.webhook_window_s)
        async with self.pool.acquire() as conn, conn.transaction():
            return await apply_event(conn, event, "webhook", self.event_hook)

    async def reconcile(self) -> int:
        return await reconcile(self.pool, self.client, lookback=self.feed_lookback, hook=self.event_hook)

    # --- applying ---

    async def _with_contact(self, principal: Principal, data: CaseIn) -> CaseIn:
        """The form with the contact the resident left out taken from their verified profile."""
        form = data.form
        if form.contact_name is not None and form.contact_phone is not None:
            return data
        name, phone = await self.contact_of(principal.person_id) if self.contact_of else (None, None)
        form = msgspec.structs.replace(
            form, contact_name=form.contact_name or name, contact_phone=form.contact_phone or phone
        )
        for field, value in (
            ("form.contactName", form.contact_name),
            ("form.contactPhone", form.contact_phone),
        ):
            if value is None:
                raise _invalid(
                    "form_invalid",
                    f"{field}: required (your profile holds none)",
                    field,
                    f"{field}：必填（您的实名信息中没有）",
                )
        return msgspec.structs.replace(data, form=form)

    async def check(self, principal: Principal, data: CaseIn) -> CaseIn:
        """Read port (life-event applications): every check `apply` makes before it writes anything
        (the contact, the item online, delivery, the materials against the guide), so a bundle can
        refuse before any of its cases exists. The application with its contact filled in."""
        data = await self._with_contact(principal, data)
        guide = await self.catalogue.guide(data.item_code, data.region_code)
        await self._check_fresh(principal, guide, data)
        return data

    async def _check_fresh(self, principal: Principal, guide: Guide, data: CaseIn) -> None:
        if not guide.channels.online:
            raise ProblemError(
                "this item is handled in the hall only",
                status=422,
                code="item_not_online",
                detail_zh="该事项只能到大厅办理",
            )
        if data.form.delivery_wanted and not guide.channels.mailable:
            raise _invalid(
                "form_invalid",
                "form.deliveryWanted: results of this item cannot be mailed",
                "form.deliveryWanted",
                "form.deliveryWanted：该事项的结果不能寄递",
            )
        if data.form.delivery_wanted and not data.form.delivery_address:
            raise _invalid(
                "form_invalid",
                "form.deliveryAddress: required when deliveryWanted",
                "form.deliveryAddress",
                "form.deliveryAddress：选择寄递时必填",
            )
        await check_materials(self.uploads, principal.person_id, guide, data.materials, require_all=True)

    async def apply(self, ctx: IdemContext, principal: Principal, data: CaseIn) -> Recorded[CaseDetail]:
        case_id = ctx.request_id
        data = await self._with_contact(principal, data)
        row = await self.pool.fetchrow("SELECT * FROM bff.cases WHERE id = $1", case_id)
        guide = await self.catalogue.guide(data.item_code, data.region_code)
        acting.check_item(principal, data.item_code)
        fresh = row is None
        if row is None:
            await self._check_fresh(principal, guide, data)
            row = await self.pool.fetchrow(
                """
                INSERT INTO bff.cases (id, person_id, request_id, item_code, item_name, region_code, task_code,
                                       channel, promise_days, status, materials)
                VALUES ($1, $2, $1, $3, $4, $5, $6, $7, $8, 'submitting', $9)
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
                f"the case system refused: {exc.detail}",
                status=422,
                code="case_refused",
                detail_zh=f"案件系统拒绝了申请：{exc.detail}",
            ) from None
        except (UpstreamUnavailable, BadUpstreamAnswer) as exc:
            if fresh and isinstance(exc, NotSent):
                # Never sent: nothing is left behind; a retry of the key starts afresh.
                await self.pool.execute("DELETE FROM bff.cases WHERE id = $1 AND project_no IS NULL", case_id)
                raise
            # In doubt: a retry of the key learns the answer (the case system de-duplicates the
            # request id); otherwise `resolve_submitting` settles the row from the case system's truth.
            raise UpstreamUnavailable(
                "the case system did not answer, so the outcome is not known yet: retry with the same"
                " Idempotency-Key, or see your cases shortly",
                headers=exc.headers or None,
                detail_zh="案件系统未应答，结果尚不确定：请用同一 Idempotency-Key 重试，或稍后查看您的办件",
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE bff.cases SET project_no = $2 WHERE id = $1 AND project_no IS NULL",
                case_id,
                application.project_no,
            )
            for event in application.events:
                await apply_event(conn, event, "reply", self.event_hook)
            await self.uploads.attach(conn, principal.person_id, _upload_ids(data.materials))
            detail = await self.detail(conn, case_id, english=False)
            return await ctx.finish(conn, detail)

    async def resolve_submitting(self, older_than_s: int = 120, limit: int = 50) -> int:
        """Applications whose answer never came (503, lost, a crash): no row stays `submitting`,
        invisible, for ever. The case system's truth about the request id decides: it has the case
        (attached, with its events: the resident sees it and is notified), or it never got it
        (voided there, so a late arrival is refused, and the row goes)."""
        rows = await self.pool.fetch(
            """
            SELECT id, person_id, materials FROM bff.cases WHERE status = 'submitting' AND project_no IS NULL
              AND created_at < now() - make_interval(secs => $1)
            ORDER BY created_at LIMIT $2
            """,
            older_than_s,
            limit,
        )
        settled = await self._settle_supplements(older_than_s, limit)
        for row in rows:
            try:
                verdict = await self.client.void(str(row["id"]))
            except ProblemError:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                if not verdict.done:
                    await conn.execute(
                        "DELETE FROM bff.cases WHERE id = $1 AND project_no IS NULL", row["id"]
                    )
                else:
                    made = msgspec.convert(verdict.body, Application)
                    await conn.execute(
                        "UPDATE bff.cases SET project_no = $2 WHERE id = $1 AND project_no IS NULL",
                        row["id"],
                        made.project_no,
                    )
                    for event in made.events:
                        await apply_event(conn, event, "reply")
                    given = row["materials"] or []
                    if isinstance(given, str):
                        given = msgspec.json.decode(given)
                    used = [str(m["uploadId"]) for m in given if isinstance(m, dict) and m.get("uploadId")]
                    await self.uploads.attach(conn, row["person_id"], used)
            settled += 1
        return settled

    async def _settle_supplements(self, older_than_s: int, limit: int) -> int:
        """Answers to a 补正 whose reply never came (503, lost, a crash), from the case system's
        truth about the request id: it has the answer (applied here: the timeline shows it and the
        resident is told, since the case system cannot take a 补正 answer back), or it never got it
        (voided there, so a late arrival is refused; ended failed, the 补正 open to answer again)."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.case_supplement_answers
            WHERE status = 'sending' AND created_at < now() - make_interval(secs => $1)
            ORDER BY created_at LIMIT $2
            """,
            older_than_s,
            limit,
        )
        settled = 0
        for row in rows:
            try:
                verdict = await self.client.void(str(row["request_id"]))
            except ProblemError:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                if verdict.done:
                    made = msgspec.convert(verdict.body, SupplementReply)
                    await apply_event(conn, made.event, "reply", self.event_hook)
                    await self.uploads.attach(conn, row["person_id"], list(row["upload_ids"]))
                await _supplement_settled(conn, row["request_id"], "answered" if verdict.done else "failed")
            settled += 1
        return settled

    async def supplement(
        self, ctx: IdemContext, principal: Principal, case: asyncpg.Record, data: SupplementIn
    ) -> Recorded[CaseDetail]:
        """Answer a 补正, intent first (`bff.case_supplement_answers`): an answer whose reply is lost
        is settled by `resolve_submitting` from the case system's truth, never left to happen, or
        not, behind the resident's back."""
        attempt = await self.pool.fetchval(
            "SELECT status FROM bff.case_supplement_answers WHERE request_id = $1", ctx.request_id
        )
        if attempt == "failed":
            raise ProblemError(
                "that answer was given up after the case system did not answer; submit it again",
                status=409,
                code="supplement_attempt_voided",
                detail_zh="案件系统未应答，该次补正提交已作废，请重新提交",
            )
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
                "there is no open correction request with that id",
                status=409,
                code="no_open_supplement",
                detail_zh="没有该编号的待补正事项",
            )
        guide = await self.catalogue.guide(case["item_code"], case["region_code"])
        refs = await check_materials(
            self.uploads, principal.person_id, guide, data.materials, require_all=False
        )
        await self.pool.execute(
            """
            INSERT INTO bff.case_supplement_answers (request_id, case_id, person_id, supplement_id, upload_ids,
                                                     status)
            VALUES ($1, $2, $3, $4, $5, 'sending') ON CONFLICT (request_id) DO NOTHING
            """,
            ctx.request_id,
            case["id"],
            principal.person_id,
            data.supplement_id,
            _upload_ids(data.materials),
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
            await self.pool.execute(
                "DELETE FROM bff.case_supplement_answers WHERE request_id = $1 AND status = 'sending'",
                ctx.request_id,
            )
            raise ProblemError(
                exc.detail,
                status=409,
                code="no_open_supplement",
                detail_zh=f"案件系统拒绝了补正：{exc.detail}",
            ) from None
        except (UpstreamUnavailable, BadUpstreamAnswer) as exc:
            if isinstance(exc, NotSent):
                # Never sent: nothing is left behind; a retry of the key starts afresh.
                await self.pool.execute(
                    "DELETE FROM bff.case_supplement_answers WHERE request_id = $1 AND status = 'sending'",
                    ctx.request_id,
                )
                raise
            await self.pool.execute(
                "UPDATE bff.case_supplement_answers SET told_failed_at = now(), updated_at = now()"
                " WHERE request_id = $1 AND status = 'sending'",
                ctx.request_id,
            )
            raise UpstreamUnavailable(
                "the case system did not answer, so it is not known yet whether the answer arrived: retry"
                " with the same Idempotency-Key; otherwise the case shows shortly whether it went through",
                headers=exc.headers or None,
                detail_zh="案件系统未应答，尚不确定补正是否送达：请用同一 Idempotency-Key 重试；否则稍后办件会显示是否已提交",
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            await apply_event(conn, reply.event, "reply", self.event_hook)
            await self.uploads.attach(conn, principal.person_id, _upload_ids(data.materials))
            await _supplement_settled(conn, ctx.request_id, "answered")
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

    async def summary(
        self,
        conn: Conn | asyncpg.Pool,
        row: asyncpg.Record,
        *,
        english: bool = False,
        clock: CountdownOut | None = None,
    ) -> CaseSummary:
        rated = row["status"] == "rated" or await self._rating(conn, row["id"]) is not None
        status = "rated" if rated else row["status"]
        result = RESULTS.get(str(row["result_code"])) if row["result_code"] is not None else None
        return CaseSummary(
            id=str(row["id"]),
            project_no=row["project_no"],
            item_code=row["item_code"],
            item_name=row["item_name"],
            region_code=row["region_code"],
            status=status,  # type: ignore[arg-type]  # a CaseStatus by construction (events.py)
            result=row["result_code"],
            upstream_status_code=row["upstream_status_code"],
            submitted_at=display_time(row["created_at"]),
            rating_due=row["status"] in ("concluded", "delivering", "delivered") and not rated,
            open_supplement_id=await self.open_supplement(conn, row["id"]),
            status_label=label(STATUS_LABELS, status, english),
            result_label=label(RESULT_LABELS, result or row["result_code"], english),
            promise_date=clock.promise_date if clock else None,
            remaining_working_days=clock.remaining_working_days if clock else None,
            paused=clock.paused if clock else False,
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
                    at=display_time(event["occurred_at"]),
                    kind=event["type"],
                    title=_title(event["type"], data, english),
                    officer=officer,
                    opinion=opinion,
                    details=timeline_details(data, english),
                )
            )
        # After the case system's own events: the mailing and its tracking, and the rating, in time order.
        later: list[tuple[datetime, TimelineEntry]] = []
        if self.deliveries is not None:
            for step in await self.deliveries.timeline_of(conn, case_id):
                entry = TimelineEntry(
                    seq=0,
                    at=display_time(step.at),
                    kind=step.kind,
                    title=step.title_en if english else step.title_zh,
                    details=step.details,
                )
                later.append((step.at, entry))
        rating = await self._rating(conn, case_id)
        if rating is not None:
            entry = TimelineEntry(
                seq=0,
                at=display_time(rating.created_at),
                kind="rated",
                title=_title("rated", {}, english),
                details={"level": rating.level},
            )
            later.append((rating.created_at, entry))
        for _, entry in sorted(later, key=lambda pair: pair[0]):  # stable: tracking keeps its order
            entry.seq = (timeline[-1].seq if timeline else 0) + 1
            timeline.append(entry)
        fee = await self._fee(conn, row)
        fee_out: CaseFeeOut | None = None
        if self.payments is not None:
            timeline = _merge(timeline, await self.payments.case_timeline(conn, case_id), english)
        if fee is not None:
            current = await self.payments.current_for_fee(conn, fee.fee_id) if self.payments else None
            settled = fee.paid_upstream or (
                current is not None and current.status not in ("created", "paying")
            )
            fee_out = CaseFeeOut(
                fee_id=fee.fee_id,
                total_fen=fee.total_fen,
                lines=fee.lines,
                payable_by=fee.payable_by,
                payment_code=fee.payment_code,
                issuing_department=fee.issuing_department,
                owed_fen=0 if settled else fee.total_fen,
                payment_id=str(current.id) if current else None,
                payment_status=current.status if current else None,
                # How to pay: WeChat Pay through this API, or at a bank with the 非税缴款码.
                pay_online=None if settled else f"/api/v1/cases/{case_id}/payments",
            )
        clock, deemed = await self._clock(events, row["promise_days"], today)
        return CaseDetail(
            case=await self.summary(conn, row, english=english, clock=clock),
            timeline=timeline,
            countdown=clock,
            deemed_accepted_on=deemed,
            rating_id=str(rating.id) if rating else None,
            fee=fee_out,
            materials=[_material_used(m) for m in row["materials"] or []],
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


async def _supplement_settled(conn: Conn, request_id: uuid.UUID, status: str) -> None:
    await conn.execute(
        "UPDATE bff.case_supplement_answers SET status = $2, updated_at = now()"
        " WHERE request_id = $1 AND status = 'sending'",
        request_id,
        status,
    )


def _upload_ids(materials: list[MaterialIn]) -> list[str]:
    return [m.upload_id for m in materials if m.upload_id]
