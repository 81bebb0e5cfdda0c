"""12345 tickets from the phone: the suggestions read before a consultation, filing, following the
ticket's steps, answering a request for information and rating the handling (回访).

Filing is re-entrant under the idempotency key: our ticket row goes in first (status `filing`, the
text and address encrypted), then 12345 is asked with our stable request id (it de-duplicates, so
a re-run gets the same ticket), then the ticket number, its first step and the recorded answer are
written in one transaction. Everything is checked before the row goes in, so a refusal leaves
nothing behind: not a row, not a call to 12345.

Every step of a ticket — the signed webhook, the change-feed reconciler, the answer to our own
call — ends in `apply_event`: keyed by 12345's event id (a second delivery changes nothing), the
status follows the highest ticket_seq (a late, older step joins the timeline without rolling the
status back), and the steps the resident should hear of (`HOTLINE_NOTIFIED`) go to the outbox in the
same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import asyncpg.pool
import msgspec

from adapters.errors import BadUpstreamAnswer, NotSent, ProblemError, UpstreamUnavailable
from adapters.hotline import callback
from adapters.hotline.client import HotlineClient, HotlineRefused
from adapters.hotline.schemas import Attachment, Caller, HotlineChannel, HotlineEvent, Location, Related
from adapters.pii import mask_address, mask_text
from auth import audit, persons
from auth.crypto import PiiCrypto
from auth.principal import Principal
from bff.cases.service import CaseService
from bff.catalogue.schemas import SearchPage
from bff.catalogue.service import CatalogueService
from bff.hotline.schemas import (
    MAX_TEXT,
    MIN_TEXT,
    HotlineAttachmentOut,
    HotlineInfoRequestOut,
    HotlineItemRef,
    HotlineItemSuggestion,
    HotlineLocationOut,
    HotlineRatingIn,
    HotlineRatingOut,
    HotlineReplyIn,
    HotlineSectionStatus,
    HotlineTimelineStep,
    KbAnswerOut,
    Suggestions,
    TicketDetail,
    TicketIn,
    TicketPage,
    TicketSummary,
)
from bff.idempotency import IdemContext, Recorded
from bff.platform.access import owned, parse_uuid
from bff.platform.clock import CHINA
from bff.platform.feeds import read_from
from bff.platform.logs import get_logger
from bff.platform.paging import keyset_after, keyset_page
from bff.uploads.service import UploadService
from push import outbox
from push.topics import HotlineChanged

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

log = get_logger("bff.hotline")

FEED_CURSOR = "hotline.changes"
# 12345's rule (sandbox/hotline/routes.py): only these may be kept from the department (保密).
ANONYMOUS_KINDS = frozenset({"complaint", "report", "suggestion"})
# The steps a resident is told of, and the status each leaves: the department and its deadline,
# a question to answer, 督办 when it is late, the answer to rate, the end. Filing (they did it),
# the department starting, and the resident's own reply and rating are only on the timeline.
HOTLINE_NOTIFIED = {
    "dispatched": "dispatched",
    "info_requested": "awaiting_info",
    "supervised": "supervised",
    "feedback_given": "feedback_given",
    "closed": "closed",
}
_RUNNING = frozenset({"dispatched", "in_progress", "supervised"})
# The catalogue's search takes at most 64 characters (README: query_too_long).
_ITEM_QUERY_CHARS = 64
_CHANNELS: dict[str, HotlineChannel] = {"app": "app", "miniprogram": "mini_program", "kiosk": "kiosk"}

KIND_LABELS = {
    "consultation": ("咨询", "Consultation"),
    "complaint": ("投诉", "Complaint"),
    "report": ("举报", "Report"),
    "suggestion": ("建议", "Suggestion"),
    "praise": ("表扬", "Praise"),
}
STATUS_LABELS = {
    "filing": ("提交中", "Filing"),
    "accepted": ("已受理", "Accepted"),
    "dispatched": ("已派单", "Passed to the department"),
    "in_progress": ("办理中", "Being handled"),
    "awaiting_info": ("待补充信息", "Waiting for your information"),
    "supervised": ("督办中", "Supervised (late)"),
    "feedback_given": ("已答复待评价", "Answered: please rate"),
    "closed": ("已办结", "Closed"),
}
STEP_TITLES = {
    "accepted": ("受理", "Accepted by 12345"),
    "dispatched": ("分类派单", "Passed to the department"),
    "started": ("限时办理", "Handling started"),
    "info_requested": ("请补充信息", "More information requested"),
    "info_supplied": ("已补充信息", "Information supplied"),
    "supervised": ("督办", "Supervised for being late"),
    "feedback_given": ("反馈", "Answered by the department"),
    "rated": ("回访评价", "Handling rated"),
    "closed": ("办结归档", "Closed"),
}
# What of a step's data the timeline shows (the resident's own reply text is not kept).
_SHOWN = {
    "accepted": ("kind", "channel"),
    "dispatched": ("department_name", "category", "urgency", "deadline_at"),
    "started": ("department_name", "officer"),
    "info_requested": ("info_request_id", "questions"),
    "info_supplied": ("info_request_id", "paused_s"),
    "supervised": ("deadline_at", "supervisor", "opinion"),
    "feedback_given": ("answer", "officer", "department_name", "on_time"),
    "rated": ("satisfaction", "resolved"),
    "closed": ("opinion",),
}


def _label(labels: dict[str, tuple[str, str]], code: str, english: bool) -> str:
    zh, en = labels.get(code, (code, code))
    return en if english else zh


def _display(moment: datetime | None) -> str | None:
    return moment.astimezone(CHINA).isoformat() if moment else None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _kept(event: HotlineEvent) -> dict[str, Any]:
    """A step's data as we keep it: what the timeline shows, nothing the resident typed."""
    return {k: event.data[k] for k in _SHOWN.get(event.type, ()) if k in event.data}


def _check_text(text: str, field: str) -> str:
    size = len(text.strip())
    if size > MAX_TEXT:
        raise ProblemError(
            f"{field}: at most {MAX_TEXT} characters, {size} given",
            detail_zh=f"{field}：最多 {MAX_TEXT} 个字，现有 {size} 个",
            status=422,
            code="hotline_text_too_long",
            extra={"field": field, "maxLength": MAX_TEXT},
        )
    if size < MIN_TEXT:
        raise ProblemError(
            f"{field}: at least {MIN_TEXT} characters",
            detail_zh=f"{field}：至少 {MIN_TEXT} 个字",
            status=422,
            code="hotline_text_too_short",
            extra={"field": field, "minLength": MIN_TEXT},
        )
    return text.strip()


@dataclass(frozen=True)
class FeedbackTodo:
    ticket_id: str
    ticket_no: str
    kind: str
    title: str
    department_name: str | None
    answered_at: datetime


class HotlineService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: HotlineClient,
        catalogue: CatalogueService,
        cases: CaseService,
        uploads: UploadService,
        crypto: PiiCrypto,
        *,
        notify_url: str,
        webhook_secret: str,
        webhook_window_s: int,
        feed_lookback: int,
        attachment_base_url: str,
    ) -> None:
        self.pool = pool
        self.client = client
        self.catalogue = catalogue
        self.cases = cases
        self.uploads = uploads
        self.crypto = crypto
        self.notify_url = notify_url or None
        self.webhook_secret = webhook_secret
        self.webhook_window_s = webhook_window_s
        self.feed_lookback = feed_lookback
        self.attachment_base_url = attachment_base_url.rstrip("/")

    # --- before filing a consultation ---

    async def suggest(self, q: str, region: str | None, *, english: bool) -> Suggestions:
        """12345's knowledge-base answers and the matching items of our catalogue, each section on
        its own: one upstream down leaves the other's answer (its status says which)."""
        answers: list[KbAnswerOut] = []
        answers_status = "ok"
        try:
            found = await self.client.kb_search(q.strip(), limit=3)
            answers = [
                KbAnswerOut(
                    kb_id=a.kb_id,
                    category=a.category,
                    question=a.question,
                    answer=a.answer,
                    department=a.department,
                    score=a.score,
                )
                for a in found.results
            ]
        except ProblemError as exc:
            log.info("hotline_kb_unavailable", code=exc.code)
            answers_status = "unavailable"
        items: list[HotlineItemSuggestion] = []
        items_status = "ok"
        try:
            page: SearchPage = self.catalogue.search(
                q.strip()[:_ITEM_QUERY_CHARS],
                region=region,
                audience=None,
                topic=None,
                limit=3,
                cursor=None,
                english=english,
            )
            if page.query.match != "none":
                items = [
                    HotlineItemSuggestion(code=i.code, name=i.name, department=i.department, online=i.online)
                    for i in page.items
                ]
        except ProblemError as exc:
            if exc.status < 500:
                raise
            items_status = "unavailable"
        return Suggestions(
            query=mask_text(q.strip()),
            answers=answers,
            answers_status=HotlineSectionStatus(status=answers_status),  # type: ignore[arg-type]
            items=items,
            items_status=HotlineSectionStatus(status=items_status),  # type: ignore[arg-type]
        )

    # --- filing ---

    async def _attachments(self, person_id: str, upload_ids: list[str]) -> list[tuple[str, str, Attachment]]:
        """(upload id, file name, what 12345 gets) for each of the resident's own uploads; anyone
        else's upload looks exactly like a missing one."""
        out: list[tuple[str, str, Attachment]] = []
        for index, upload_id in enumerate(upload_ids):
            field = f"attachments[{index}]"
            found = await self.uploads.owned_upload(person_id, upload_id)
            row = (
                await self.pool.fetchrow(
                    "SELECT file_name, sha256, size_bytes FROM bff.uploads WHERE id = $1", found
                )
                if found is not None
                else None
            )
            if row is None or any(str(found) == seen for seen, _, _ in out):
                raise ProblemError(
                    f"{field}: no upload {upload_id[:64]}",
                    detail_zh=f"{field}：没有这个上传文件",
                    status=422,
                    code="hotline_attachment_invalid",
                    extra={"field": field},
                )
            out.append(
                (
                    str(found),
                    row["file_name"],
                    Attachment(
                        name=row["file_name"],
                        url=f"{self.attachment_base_url}/{found}",
                        sha256=row["sha256"],
                        size=row["size_bytes"],
                    ),
                )
            )
        return out

    async def file(self, ctx: IdemContext, principal: Principal, data: TicketIn) -> Recorded[TicketDetail]:
        ticket_id = ctx.request_id
        row = await self.pool.fetchrow("SELECT * FROM bff.hotline_tickets WHERE id = $1", ticket_id)
        text = _check_text(data.text, "text")
        if data.anonymous and data.kind not in ANONYMOUS_KINDS:
            raise ProblemError(
                f"a {data.kind} cannot be kept from the department",
                detail_zh="此类诉求不能对承办部门保密",
                status=422,
                code="hotline_anonymity_not_allowed",
                extra={"field": "anonymous"},
            )
        attachments = await self._attachments(principal.person_id, data.attachments)
        item_name = None
        if data.item_code is not None:
            region = data.location.region_code if data.location else None
            item_name = (await self.catalogue.guide(data.item_code, region)).name
        case = await self.cases.own(principal, data.case_id) if data.case_id is not None else None
        if data.location is not None and not self.catalogue.is_region(data.location.region_code):
            raise ProblemError(
                f"location.regionCode: {data.location.region_code} is not a region of Hunan",
                detail_zh=f"location.regionCode：{data.location.region_code} 不是湖南省的行政区划",
                status=422,
                code="hotline_location_invalid",
                extra={"field": "location.regionCode"},
            )
        person = await persons.load(self.pool, self.crypto, principal.person_id)
        if person is None or not person.phone:
            raise ProblemError(
                "12345 calls the resident back: bind a mobile number first",
                detail_zh="12345 需要回电联系您，请先绑定手机号",
                status=422,
                code="hotline_phone_required",
            )
        # Shown in lists and kept in plain text: masked, like any display text (the full text is encrypted).
        title = mask_text(data.title or text[:20])
        body = HotlineClient.filing(
            request_id=str(ticket_id),
            kind=data.kind,
            content=text,
            caller=Caller(name=person.name, phone=person.phone, ref=principal.person_id),
            channel=_CHANNELS.get(principal.channel, "app"),
            anonymous=data.anonymous,
            location=Location(
                region_code=data.location.region_code,
                address=data.location.address,
                lng=data.location.lng,
                lat=data.location.lat,
            )
            if data.location
            else None,
            related=Related(catalog_code=data.item_code, project_no=case["project_no"] if case else None),
            attachments=[a for _, _, a in attachments],
            notify_url=self.notify_url,
        )
        if row is None:
            row = await self.pool.fetchrow(
                """
                INSERT INTO bff.hotline_tickets (id, person_id, request_id, kind, title, text_enc, request_enc,
                    channel, anonymous, item_code, item_name, case_id, project_no, region_code, address_enc,
                    attachments, status)
                VALUES ($1, $2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, 'filing')
                ON CONFLICT (id) DO NOTHING RETURNING *
                """,
                ticket_id,
                principal.person_id,
                data.kind,
                title,
                self.crypto.encrypt("text", text),
                self.crypto.encrypt("request", msgspec.json.encode(body).decode()),
                principal.channel,
                data.anonymous,
                data.item_code,
                item_name,
                case["id"] if case else None,
                case["project_no"] if case else None,
                data.location.region_code if data.location else None,
                self.crypto.encrypt("address", data.location.address)
                if data.location and data.location.address
                else None,
                [{"uploadId": u, "fileName": n} for u, n, _ in attachments],
            ) or await self.pool.fetchrow("SELECT * FROM bff.hotline_tickets WHERE id = $1", ticket_id)
        assert row is not None
        answer = await self._complete(row, principal.person_id, ctx)
        assert answer is not None
        return answer

    async def _complete(
        self, row: asyncpg.Record, person_id: str, ctx: IdemContext | None
    ) -> Recorded[TicketDetail] | None:
        """Ask 12345 with the stored filing (a re-run sends the same bytes) unless our row already
        has its number; then the number, the first step and the answer in one transaction."""
        ticket_id = row["id"]
        events: list[HotlineEvent] = []
        ticket_no = row["ticket_no"]
        if ticket_no is None:
            body = msgspec.json.decode(self.crypto.decrypt("request", row["request_enc"]))
            try:
                ticket = await self.client.send_filing(body)
            except HotlineRefused as exc:
                # 12345's final word: no ticket exists there, ours goes too.
                await self._forget(ticket_id)
                raise ProblemError(
                    f"12345 refused: {exc.detail}",
                    detail_zh=f"12345 拒绝受理：{exc.detail}",
                    status=422,
                    code="hotline_refused",
                ) from None
            except NotSent:
                await self._forget(ticket_id)
                raise
            except (UpstreamUnavailable, BadUpstreamAnswer) as exc:
                # In doubt: a retry of the key sends the same filing (12345 answers the ticket it
                # made, or makes it now); otherwise `resolve_filing` does.
                raise UpstreamUnavailable(
                    "12345 did not answer, so the outcome is not known yet: retry with the same"
                    " Idempotency-Key, or see your tickets shortly",
                    detail_zh="12345 未应答，结果暂不确定：请用同一 Idempotency-Key 重试，或稍后查看我的诉求",
                    headers=exc.headers or None,
                ) from None
            events, ticket_no = ticket.events, ticket.ticket_no
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                UPDATE bff.hotline_tickets SET ticket_no = $2,
                       status = CASE WHEN status = 'filing' THEN 'accepted' ELSE status END, updated_at = now()
                 WHERE id = $1 AND ticket_no IS NULL
                """,
                ticket_id,
                ticket_no,
            )
            for event in events:
                await self.apply_event(conn, event, "reply")
            await self.uploads.attach(conn, person_id, [a["uploadId"] for a in row["attachments"]])
            if ctx is None:  # the resolver: nobody waits for an answer
                return None
            return await ctx.finish(conn, await self._detail(conn, ticket_id, english=False))

    async def resolve_filing(self, *, older_than_s: float = 60.0, batch: int = 50) -> int:
        """The worker's job: filings whose answer never came (12345 down, the API killed, the
        resident gone) are sent again, the same bytes under the same request id, so no ticket
        12345 made stays invisible to its resident and none is made twice. A refusal removes ours."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.hotline_tickets WHERE ticket_no IS NULL AND status = 'filing'
              AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2
            """,
            older_than_s,
            batch,
        )
        settled = 0
        for row in rows:
            try:
                await self._complete(row, row["person_id"], None)
            except ProblemError as exc:
                log.info("hotline_filing_still_pending", code=exc.code)
                continue
            settled += 1
        return settled

    async def _forget(self, ticket_id: uuid.UUID) -> None:
        await self.pool.execute(
            "DELETE FROM bff.hotline_tickets WHERE id = $1 AND ticket_no IS NULL", ticket_id
        )

    # --- reading ---

    async def own(self, principal: Principal, ticket_id: str) -> asyncpg.Record:
        """The caller's filed ticket, else a 404 (another resident's is audited)."""
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.hotline_tickets WHERE id = $1", parse_uuid(ticket_id, "hotline_ticket")
        )
        if row is not None and row["ticket_no"] is None and row["person_id"] == principal.person_id:
            row = None  # not filed yet: not yet a ticket
        return await owned(self.pool, principal, "hotline_ticket", ticket_id, row)

    async def view(self, principal: Principal, ticket_id: str, *, english: bool) -> TicketDetail:
        row = await self.own(principal, ticket_id)
        # One snapshot: the ticket row and its steps as of the same commit (a step landing between
        # two reads would show on the timeline with the status still before it).
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            out = await self._detail(conn, row["id"], english=english)
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action="hotline_ticket.read",
            object=f"hotline_ticket:{row['id']}",
            result="ok",
            channel=principal.channel,
        )
        return out

    async def mine(
        self, principal: Principal, limit: int, cursor: str | None, *, english: bool
    ) -> TicketPage:
        moment, ident = keyset_after(cursor)
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.hotline_tickets
            WHERE person_id = $1 AND ticket_no IS NOT NULL
              AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
            ORDER BY created_at DESC, id DESC LIMIT $4
            """,
            principal.person_id,
            moment,
            ident,
            limit + 1,
        )
        page, following = keyset_page(rows, limit, "created_at")
        return TicketPage(items=[self._summary(r, english) for r in page], next_cursor=following)

    async def awaiting_feedback(self, person_id: str, limit: int) -> list[FeedbackTodo]:
        """Home's read port: the resident's tickets 12345 answered and waits for them to rate (回访),
        oldest answer first (it has waited longest)."""
        rows = await self.pool.fetch(
            """
            SELECT id, ticket_no, kind, title, department_name, updated_at FROM bff.hotline_tickets
            WHERE person_id = $1 AND status = 'feedback_given' AND rating IS NULL
            ORDER BY updated_at, id LIMIT $2
            """,
            person_id,
            limit,
        )
        return [
            FeedbackTodo(
                ticket_id=str(r["id"]),
                ticket_no=r["ticket_no"],
                kind=r["kind"],
                title=mask_text(r["title"]),
                department_name=r["department_name"],
                answered_at=r["updated_at"],
            )
            for r in rows
        ]

    def _summary(self, row: asyncpg.Record, english: bool) -> TicketSummary:
        return TicketSummary(**self._summary_fields(row, english))

    @staticmethod
    def _summary_fields(row: asyncpg.Record, english: bool) -> dict[str, Any]:
        due = row["deadline_at"]
        return {
            "id": str(row["id"]),
            "ticket_no": row["ticket_no"],
            "kind": row["kind"],
            "kind_label": _label(KIND_LABELS, row["kind"], english),
            "title": mask_text(row["title"]),
            "status": row["status"],
            "status_label": _label(STATUS_LABELS, row["status"], english),
            "department_name": row["department_name"],
            "deadline_at": _display(due),
            "overdue": bool(due and row["status"] in _RUNNING and due < datetime.now(UTC)),
            "awaiting_rating": row["status"] == "feedback_given" and row["rating"] is None,
            "awaiting_info": row["status"] == "awaiting_info",
            "created_at": _display(row["created_at"]),
            "updated_at": _display(row["updated_at"]),
        }

    async def _detail(
        self, conn: Conn | asyncpg.Pool, ticket_id: uuid.UUID, *, english: bool
    ) -> TicketDetail:
        row = await conn.fetchrow("SELECT * FROM bff.hotline_tickets WHERE id = $1", ticket_id)
        assert row is not None
        events = await conn.fetch(
            "SELECT * FROM bff.hotline_events WHERE ticket_id = $1 ORDER BY ticket_seq", ticket_id
        )
        info, rating = row["open_info_request"], row["rating"]
        return TicketDetail(
            **self._summary_fields(row, english),
            text=mask_text(self.crypto.decrypt("text", row["text_enc"])),
            anonymous=row["anonymous"],
            item=HotlineItemRef(code=row["item_code"], name=row["item_name"]) if row["item_code"] else None,
            case_id=str(row["case_id"]) if row["case_id"] else None,
            project_no=row["project_no"],
            location=HotlineLocationOut(
                region_code=row["region_code"],
                address=mask_address(self.crypto.decrypt("address", row["address_enc"]))
                if row["address_enc"]
                else "",
            )
            if row["region_code"]
            else None,
            attachments=[
                HotlineAttachmentOut(upload_id=a["uploadId"], file_name=a["fileName"])
                for a in row["attachments"]
            ],
            category=row["category"],
            urgency=row["urgency"],
            open_info_request=HotlineInfoRequestOut(id=info["id"], questions=info["questions"])
            if info
            else None,
            rating=HotlineRatingOut(
                satisfaction=rating["satisfaction"], resolved=rating["resolved"], comment=rating["comment"]
            )
            if rating
            else None,
            timeline=[
                HotlineTimelineStep(
                    seq=e["ticket_seq"],
                    at=_display(e["occurred_at"]) or "",
                    kind=e["type"],
                    title=_label(STEP_TITLES, e["type"], english),
                    status=e["status"],
                    details={_camel(k): v for k, v in e["data"].items()} or None,
                )
                for e in events
            ],
        )

    # --- answering 12345, rating the handling ---

    async def reply(
        self, ctx: IdemContext, principal: Principal, ticket: asyncpg.Record, data: HotlineReplyIn
    ) -> Recorded[TicketDetail]:
        text = _check_text(data.text, "text")
        info = ticket["open_info_request"]
        answered = await self.pool.fetchval(
            """
            SELECT 1 FROM bff.hotline_events WHERE ticket_id = $1 AND type = 'info_supplied'
               AND data ->> 'info_request_id' = $2
            """,
            ticket["id"],
            data.info_request_id,
        )
        if not answered and (info is None or info["id"] != data.info_request_id):
            raise ProblemError(
                "there is no open request for information with that id",
                detail_zh="没有待补充的信息请求",
                status=409,
                code="hotline_no_open_info_request",
            )
        attachments = await self._attachments(principal.person_id, data.attachments)
        try:
            answer = await self.client.reply(
                request_id=str(ctx.request_id),
                ticket_no=ticket["ticket_no"],
                info_request_id=data.info_request_id,
                text=text,
                attachments=[a for _, _, a in attachments],
            )
        except HotlineRefused as exc:
            raise ProblemError(
                exc.detail, detail_zh="没有待补充的信息请求", status=409, code="hotline_no_open_info_request"
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            await self.apply_event(conn, answer.event, "reply")
            if attachments:
                await conn.execute(
                    "UPDATE bff.hotline_tickets SET attachments = attachments || $2::jsonb WHERE id = $1",
                    ticket["id"],
                    [{"uploadId": u, "fileName": n} for u, n, _ in attachments],
                )
            await self.uploads.attach(conn, principal.person_id, [u for u, _, _ in attachments])
            return await ctx.finish(conn, await self._detail(conn, ticket["id"], english=False))

    async def rate(
        self, ctx: IdemContext, principal: Principal, ticket: asyncpg.Record, data: HotlineRatingIn
    ) -> Recorded[TicketDetail]:
        if ticket["rating"] is not None:
            raise ProblemError(
                "the handling of this ticket was already rated",
                detail_zh="该诉求的办理已评价过",
                status=409,
                code="hotline_already_rated",
            )
        if ticket["status"] != "feedback_given":
            raise ProblemError(
                f"nothing to rate while the ticket is {ticket['status']}",
                detail_zh="诉求尚未反馈办理结果，暂不能评价",
                status=409,
                code="hotline_not_ratable",
            )
        try:
            answer = await self.client.rate(
                request_id=str(ctx.request_id),
                ticket_no=ticket["ticket_no"],
                satisfaction=data.satisfaction,
                resolved=data.resolved,
                comment=data.comment,
            )
        except HotlineRefused as exc:
            code = "hotline_already_rated" if exc.reason == "already_rated" else "hotline_not_ratable"
            raise ProblemError(
                exc.detail, detail_zh=f"不能评价：{exc.detail}", status=409, code=code
            ) from None
        async with self.pool.acquire() as conn, conn.transaction():
            await self.apply_event(conn, answer.event, "reply")
            # The comment is the resident's own words: kept with the ticket, not on the timeline.
            await conn.execute(
                "UPDATE bff.hotline_tickets SET rating = $2 WHERE id = $1",
                ticket["id"],
                {"satisfaction": data.satisfaction, "resolved": data.resolved, "comment": data.comment},
            )
            return await ctx.finish(conn, await self._detail(conn, ticket["id"], english=False))

    # --- 12345's steps: webhook, feed, our own calls ---

    async def receive_callback(self, headers: Mapping[str, str], body: bytes) -> str:
        try:
            event = callback.verify(headers, body, secret=self.webhook_secret, window_s=self.webhook_window_s)
        except callback.CallbackRejected as exc:
            await audit.refused_callback(
                self.pool, sender="hotline", event_id=headers.get(callback.EVENT_ID, "-"), detail=exc.detail
            )
            raise
        async with self.pool.acquire() as conn, conn.transaction():
            return await self.apply_event(conn, event, "callback")

    async def apply_event(self, conn: Conn, event: HotlineEvent, via: str) -> str:
        """Apply one step inside the caller's transaction: 'applied', 'duplicate' or 'unknown_ticket'."""
        row = await conn.fetchrow(
            "SELECT * FROM bff.hotline_tickets WHERE ticket_no = $1 FOR UPDATE", event.ticket_no
        )
        if row is None:
            return "unknown_ticket"
        inserted = await conn.fetchval(
            """
            INSERT INTO bff.hotline_events (event_id, ticket_id, seq, ticket_seq, type, status, occurred_at, data, via)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING RETURNING 1
            """,
            event.event_id,
            row["id"],
            event.seq,
            event.ticket_seq,
            event.type,
            event.status,
            event.occurred_at,
            _kept(event),
            via,
        )
        if inserted is None:
            return "duplicate"
        await self._follow(conn, row, event)
        if event.type in HOTLINE_NOTIFIED:
            department = event.data.get("department_name") or row["department_name"]
            due = event.data.get("deadline_at")
            await outbox.enqueue(
                conn,
                "hotline.changed",
                row["person_id"],
                f"hotline-event:{event.event_id}",
                HotlineChanged(
                    ticket_id=str(row["id"]),
                    ticket_no=event.ticket_no,
                    kind=row["kind"],
                    event=event.type,
                    status=event.status,
                    department_name=department,
                    deadline_at=due if isinstance(due, str) else _iso(row["deadline_at"]),
                    occurred_at=event.occurred_at.isoformat(),
                ),
            )
        return "applied"

    @staticmethod
    async def _follow(conn: Conn, row: asyncpg.Record, event: HotlineEvent) -> None:
        """What a step changes on our ticket. Facts a step brings (the department, the deadline)
        are kept whatever order steps arrive in; the status only moves forward."""
        data, ticket_id = event.data, row["id"]
        if event.type == "dispatched":
            await conn.execute(
                """
                UPDATE bff.hotline_tickets SET department_name = $2, category = $3, urgency = $4,
                       deadline_at = coalesce(deadline_at, $5::timestamptz) WHERE id = $1
                """,
                ticket_id,
                data.get("department_name"),
                data.get("category"),
                data.get("urgency"),
                datetime.fromisoformat(data["deadline_at"]) if data.get("deadline_at") else None,
            )
        elif event.type == "info_requested":
            # Unless its answer already arrived (steps can overtake each other).
            await conn.execute(
                """
                UPDATE bff.hotline_tickets SET open_info_request = $2 WHERE id = $1 AND NOT EXISTS (
                    SELECT 1 FROM bff.hotline_events WHERE ticket_id = $1 AND type = 'info_supplied'
                       AND data ->> 'info_request_id' = $3)
                """,
                ticket_id,
                {"id": data.get("info_request_id"), "questions": list(data.get("questions") or [])},
                data.get("info_request_id"),
            )
        elif event.type == "info_supplied":
            # The clock stood still while 12345 waited for the resident: its deadline moves by that.
            await conn.execute(
                """
                UPDATE bff.hotline_tickets SET deadline_at = deadline_at + $2,
                       open_info_request = CASE WHEN open_info_request ->> 'id' = $3 THEN NULL
                                                ELSE open_info_request END
                 WHERE id = $1
                """,
                ticket_id,
                timedelta(seconds=int(data.get("paused_s") or 0)),
                data.get("info_request_id"),
            )
        elif event.type == "rated" and row["rating"] is None:
            await conn.execute(
                "UPDATE bff.hotline_tickets SET rating = $2 WHERE id = $1",
                ticket_id,
                {
                    "satisfaction": data.get("satisfaction"),
                    "resolved": bool(data.get("resolved")),
                    "comment": "",
                },
            )
        await conn.execute(
            """
            UPDATE bff.hotline_tickets SET status = $2, version = $3, updated_at = now()
             WHERE id = $1 AND version < $3
            """,
            ticket_id,
            event.status,
            event.ticket_seq,
        )

    async def reconcile(self, *, max_pages: int = 20, page_size: int = 200) -> int:
        """The worker's job: read 12345's change feed from `feed_lookback` events before where we
        stopped (bff/platform/feeds.py: a step that committed after a higher seq was read is still
        read; what is read again is skipped by event id); returns how many steps were new to us."""
        applied = 0
        # A page must reach past the cursor, or the cursor could never move.
        lookback = min(self.feed_lookback, page_size // 2)
        for _ in range(max_pages):
            cursor = int(
                await self.pool.fetchval("SELECT position FROM bff.sync_cursors WHERE name = $1", FEED_CURSOR)
                or 0
            )
            page = await self.client.changes(read_from(cursor, lookback), limit=page_size)
            async with self.pool.acquire() as conn, conn.transaction():
                for event in page.events:
                    if await self.apply_event(conn, event, "feed") == "applied":
                        applied += 1
                await conn.execute(
                    """
                    INSERT INTO bff.sync_cursors (name, position) VALUES ($1, $2)
                    ON CONFLICT (name) DO UPDATE SET position = greatest(bff.sync_cursors.position, EXCLUDED.position),
                        updated_at = now()
                    """,
                    FEED_CURSOR,
                    page.next_since,
                )
            if page.next_since <= cursor or len(page.events) < page_size:
                break
        if applied:
            log.info("hotline_reconciled", applied=applied)
        return applied


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
