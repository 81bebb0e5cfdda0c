"""一件事一次办: one application for a life event, one case per applicable item.

The questionnaire decides which of the bundle's steps apply; each applicable item that can be
applied for online here becomes a member: it gets the one form and, of the materials given once,
only those its guide asks for. Everything is checked (through the case domain's own checks) before
anything is written, so a bad submission creates nothing. Then the bundle row and its member rows
go in, and the members are submitted in parallel through `CaseService.apply`, each under its own
request id derived from the bundle's (so a re-run finds its own cases, and the case system
de-duplicates). One member's failure (a refusal, no answer) is recorded on that member and leaves
the others standing; it is retried per member. The view reads each member's case from the case
domain, never its tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from adapters.errors import ProblemError
from auth.crypto import PiiCrypto
from auth.principal import Principal
from bff.cases.schemas import CaseDetail, CaseIn, FormIn, MaterialIn
from bff.cases.service import CaseService, display_time
from bff.catalogue.schemas import Guide
from bff.catalogue.service import CatalogueService, LifeEventSpec
from bff.idempotency import IdemContext, PartContext, Recorded
from bff.lifeapps.schemas import (
    BundleState,
    DepartmentFees,
    FeesOut,
    FormMaterialOut,
    FormStepOut,
    HallItemOut,
    LifeApplicationIn,
    LifeApplicationOut,
    LifeFormOut,
    MemberFailure,
    MemberFee,
    MemberOut,
    NextActionOut,
    NextKind,
    QuestionOut,
)
from bff.payments.schemas import DepartmentPaymentOut
from bff.payments.service import PaymentService
from bff.platform.access import owned, parse_uuid

STATE_LABELS: dict[str, tuple[str, str]] = {
    "some_failed": ("有事项提交失败", "A member's submission failed"),
    "some_need_supplement": ("有事项待补正", "A member needs a correction"),
    "submitting": ("提交中", "Submitting"),
    "some_not_accepted": ("有事项不予受理", "A member was not accepted"),
    "all_concluded": ("全部办结", "All concluded"),
    "all_accepted": ("全部受理", "All accepted"),
    "submitted": ("已提交", "Submitted"),
}
_ENDED = {"concluded", "delivering", "delivered", "rated"}
_HOME_BUNDLES = 10  # a resident has a handful of life events under way at most


class OpenBundle(msgspec.Struct, frozen=True, kw_only=True):
    """What one life-event application not yet concluded asks of its resident now (home's read
    port): home shows it as one to-do, and its members' cases through it, not one by one."""

    application_id: str
    event_name: str
    state: BundleState
    state_label: str
    next_kind: NextKind
    next_text: str
    members: int
    concluded: int
    case_ids: frozenset[str]


_ACCEPTED = {"accepted", "in_progress", "special_procedure"} | _ENDED


def _invalid(code: str, detail: str, field: str, zh: str) -> ProblemError:
    return ProblemError(detail, status=422, code=code, extra={"field": field}, detail_zh=zh)


def parse_answers(raw: str | None) -> dict[str, bool]:
    """`registerHousehold=yes,vaccinationCardLost=no` (the form's query) -> answers."""
    out: dict[str, bool] = {}
    for part in (raw or "").split(","):
        if not part:
            continue
        name, _, value = part.partition("=")
        if value not in ("yes", "no") or not name:
            raise _invalid(
                "answers_invalid",
                "answers: write question=yes or question=no, separated by commas",
                "answers",
                "answers：格式为 问题=yes 或 问题=no，以逗号分隔",
            )
        out[name] = value == "yes"
    return out


def _check_answers(event: LifeEventSpec, answers: dict[str, bool], *, complete: bool) -> None:
    asked = {q.id for q in event.questions}
    unknown = sorted(set(answers) - asked)
    if unknown:
        raise _invalid(
            "answers_invalid",
            f"answers: this bundle asks no question {unknown[0]!r}",
            "answers",
            f"answers：该主题没有问题“{unknown[0]}”",
        )
    missing = [q.id for q in event.questions if q.id not in answers]
    if complete and missing:
        raise _invalid(
            "answers_invalid",
            "answers: answer every question; missing " + ", ".join(missing),
            "answers",
            "answers：请回答全部问题，缺少 " + "、".join(missing),
        )


def _applies(when: str | None, answers: dict[str, bool]) -> bool | None:
    if when is None:
        return True
    return answers.get(when)


class _Member(msgspec.Struct, frozen=True):
    code: str
    name: str
    guide: Guide


class LifeApplicationService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        crypto: PiiCrypto,
        catalogue: CatalogueService,
        cases: CaseService,
        payments: PaymentService,
    ) -> None:
        self.pool = pool
        self.crypto = crypto
        self.catalogue = catalogue
        self.cases = cases
        self.payments = payments

    # --- the questionnaire and the merged form ---

    async def _plan(
        self, event: LifeEventSpec, region: str, answers: dict[str, bool]
    ) -> tuple[list[FormStepOut], list[_Member], list[HallItemOut]]:
        """Every step with whether it applies and how it is done here; the online members; the
        applicable items done in the hall."""
        steps: list[FormStepOut] = []
        members: list[_Member] = []
        hall: list[HallItemOut] = []
        for order, step in enumerate(event.steps, start=1):
            code = self.catalogue.item_code(step.item)
            applies = _applies(step.when, answers)
            guide = await self._guide(code, region) if code else None
            steps.append(
                FormStepOut(
                    order=order,
                    code=code,
                    name=step.item,
                    note=step.note,
                    condition=step.when,
                    applies=applies,
                    online=guide.channels.online if guide else None,
                    mailable=guide.channels.mailable if guide else None,
                )
            )
            if applies and guide is not None and code is not None:
                if guide.channels.online:
                    members.append(_Member(code, step.item, guide))
                else:
                    hall.append(HallItemOut(code=code, name=step.item))
        return steps, members, hall

    async def _guide(self, code: str, region: str) -> Guide | None:
        """The item's guide here; None when the item is not offered here (withdrawn, or no
        implementation for this region): the step is then neither a member nor a hall item."""
        try:
            return await self.catalogue.guide(code, region)
        except ProblemError as exc:
            if exc.status >= 500:
                raise
            return None

    async def form(
        self, event_id: str, region: str, raw_answers: str | None, *, english: bool
    ) -> LifeFormOut:
        event = self.catalogue.life_event_spec(event_id)
        self.catalogue.check_region(region)
        answers = parse_answers(raw_answers)
        _check_answers(event, answers, complete=False)
        steps, members, _ = await self._plan(event, region, answers)
        return LifeFormOut(
            event_id=event.id,
            name=event.name,
            region_code=region,
            questions=[
                QuestionOut(id=q.id, text=q.text_en if english else q.text, answer=answers.get(q.id))
                for q in event.questions
            ],
            unanswered=[q.id for q in event.questions if q.id not in answers],
            steps=steps,
            materials=_union(members),
        )

    # --- applying ---

    async def _members_in(
        self, principal: Principal, event: LifeEventSpec, data: LifeApplicationIn
    ) -> tuple[list[tuple[_Member, CaseIn]], list[HallItemOut]]:
        """Each member's own application, checked as the case domain checks one; a 4xx before
        anything is written."""
        self.catalogue.check_region(data.region_code)
        _check_answers(event, data.answers, complete=True)
        _, members, hall = await self._plan(event, data.region_code, data.answers)
        if not members:
            raise ProblemError(
                "with these answers no item of the bundle can be applied for online here",
                status=422,
                code="nothing_to_apply",
                detail_zh="按您的回答，本地没有可网上申请的事项",
            )
        asked = {m.name for member in members for m in member.guide.materials}
        seen: set[str] = set()
        for index, given in enumerate(data.materials):
            field = f"materials[{index}]"
            if given.name not in asked:
                raise _invalid(
                    "materials_invalid",
                    f"{field}: no item of this application asks for {given.name!r}",
                    field,
                    f"{field}：本次申请的事项均未要求“{given.name}”",
                )
            if given.name in seen:
                raise _invalid(
                    "materials_invalid",
                    f"{field}: {given.name!r} is given twice (once serves every item)",
                    field,
                    f"{field}：“{given.name}”重复提交（一份即可用于所有事项）",
                )
            seen.add(given.name)
        out: list[tuple[_Member, CaseIn]] = []
        for member in members:
            wanted = {m.name for m in member.guide.materials}
            own: list[MaterialIn] = [m for m in data.materials if m.name in wanted]
            # Delivery is asked once; only the items whose result can be mailed are mailed.
            form: FormIn = data.form
            if form.delivery_wanted and not member.guide.channels.mailable:
                form = msgspec.structs.replace(form, delivery_wanted=False, delivery_address=None)
            case_in = CaseIn(item_code=member.code, region_code=data.region_code, form=form, materials=own)
            try:
                case_in = await self.cases.check(principal, case_in)
            except ProblemError as exc:
                if exc.status >= 500:
                    raise
                raise ProblemError(
                    f"{member.name}: {exc.detail}",
                    status=exc.status,
                    code=exc.code,
                    extra={**(exc.extra or {}), "itemCode": member.code},
                    detail_zh=f"{member.name}：{exc.detail_zh or exc.detail}",
                ) from None
            out.append((member, case_in))
        return out, hall

    async def apply(
        self, ctx: IdemContext, principal: Principal, event_id: str, data: LifeApplicationIn
    ) -> Recorded[LifeApplicationOut]:
        event = self.catalogue.life_event_spec(event_id)
        members, hall = await self._members_in(principal, event, data)
        bundle_id = ctx.request_id
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO bff.life_applications (id, person_id, event_id, region_code, answers, hall_items)
                VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING
                """,
                bundle_id,
                principal.person_id,
                event.id,
                data.region_code,
                data.answers,
                [msgspec.to_builtins(h) for h in hall],
            )
            for position, (member, case_in) in enumerate(members):
                await conn.execute(
                    """
                    INSERT INTO bff.life_application_members
                        (application_id, position, item_code, item_name, application_enc, case_id)
                    VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
                    """,
                    bundle_id,
                    position,
                    member.code,
                    member.name,
                    # The form's contact and delivery address are personal data: encrypted at rest.
                    self.crypto.encrypt("application", msgspec.json.encode(case_in).decode()),
                    ctx.derive(f"life-member:{member.code}"),
                )
        rows = await self.pool.fetch(
            "SELECT * FROM bff.life_application_members WHERE application_id = $1 AND state <> 'submitted'",
            bundle_id,
        )
        # In parallel; a member's failure is recorded on it and never undoes the others.
        await asyncio.gather(*(self._submit(ctx, principal, row) for row in rows))
        view = await self._view(bundle_id, english=False)
        async with self.pool.acquire() as conn, conn.transaction():
            return await ctx.finish(conn, view)

    async def _application(self, row: asyncpg.Record) -> CaseIn:
        """The member's application, decrypted; one stored in plain text before migration 1701 is
        encrypted now."""
        if row["application_enc"] is not None:
            return msgspec.json.decode(
                self.crypto.decrypt("application", row["application_enc"]), type=CaseIn
            )
        legacy = row["application"]
        data = msgspec.convert(msgspec.json.decode(legacy) if isinstance(legacy, str) else legacy, CaseIn)
        await self.pool.execute(
            """UPDATE bff.life_application_members SET application_enc = $2, application = NULL
               WHERE case_id = $1""",
            row["case_id"],
            self.crypto.encrypt("application", msgspec.json.encode(data).decode()),
        )
        return data

    async def _submit(
        self, ctx: IdemContext, principal: Principal, row: asyncpg.Record
    ) -> ProblemError | None:
        case_id: uuid.UUID = row["case_id"]

        async def submitted(conn: Any) -> None:
            await conn.execute(
                """
                UPDATE bff.life_application_members
                   SET state = 'submitted', failure_code = NULL, failure_detail = NULL,
                       failure_detail_zh = NULL, updated_at = now()
                 WHERE case_id = $1
                """,
                case_id,
            )

        data = await self._application(row)
        try:
            await self.cases.apply(PartContext(ctx, case_id, submitted), principal, data)
        except ProblemError as exc:
            await self.pool.execute(
                """
                UPDATE bff.life_application_members
                   SET state = 'failed', failure_code = $2, failure_detail = $3, failure_detail_zh = $4,
                       updated_at = now()
                 WHERE case_id = $1 AND state <> 'submitted'
                """,
                case_id,
                exc.code,
                (exc.detail or exc.code)[:500],
                (exc.detail_zh or exc.detail or exc.code)[:500],
            )
            return exc
        return None

    async def retry(
        self, ctx: IdemContext, principal: Principal, application_id: str, item_code: str
    ) -> Recorded[LifeApplicationOut]:
        bundle = await self.own(principal, application_id)
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.life_application_members WHERE application_id = $1 AND item_code = $2",
            bundle["id"],
            item_code,
        )
        if row is None:
            raise ProblemError(
                f"no member {item_code[:64]} in this application",
                status=404,
                code="member_not_found",
                detail_zh=f"该申请中没有事项 {item_code[:64]}",
            )
        current = await self.cases.detail_of(row["case_id"], english=False)
        if row["state"] == "submitted" or (current is not None and current.case.project_no is not None):
            raise ProblemError(
                "that member's case was submitted; there is nothing to retry",
                status=409,
                code="member_not_failed",
                detail_zh="该事项已提交，无需重试",
            )
        # A case row still standing means the last attempt is in doubt: ask again under the same
        # request id (the case system de-duplicates). None means the case system certainly has no
        # case for it (never sent, refused, voided): a fresh request id of this retry's own.
        case_id = row["case_id"] if current is not None else ctx.derive(f"life-member:{item_code}")
        # Compare and set: of two retries at once (different keys) one takes the member; the other
        # finds it submitting under another request id and is refused, so a member never gets two
        # cases. A re-run of the same retry key finds its own id and goes on.
        row = await self.pool.fetchrow(
            """
            UPDATE bff.life_application_members
               SET case_id = $3, attempts = attempts + CASE WHEN case_id = $3 THEN 0 ELSE 1 END,
                   state = 'submitting', updated_at = now()
             WHERE application_id = $1 AND item_code = $2 AND (state = 'failed' OR case_id = $3)
            RETURNING *
            """,
            bundle["id"],
            item_code,
            case_id,
        )
        if row is None:
            raise ProblemError(
                "that member is being submitted again already",
                status=409,
                code="member_not_failed",
                detail_zh="该事项正在重新提交",
            )
        failed = await self._submit(ctx, principal, row)
        if failed is not None:
            raise failed
        view = await self._view(bundle["id"], english=False)
        async with self.pool.acquire() as conn, conn.transaction():
            return await ctx.finish(conn, view)

    # --- paying ---

    async def pay_department(
        self, ctx: IdemContext, principal: Principal, application_id: str, department: str
    ) -> Recorded[DepartmentPaymentOut]:
        """Everything one department issued across the bundle's members, in one payment."""
        bundle = await self.own(principal, application_id)
        case_ids = await self.pool.fetch(
            """
            SELECT m.case_id FROM bff.life_application_members m JOIN bff.cases c ON c.id = m.case_id
            WHERE m.application_id = $1 AND c.project_no IS NOT NULL ORDER BY m.position
            """,
            bundle["id"],
        )
        return await self.payments.pay_together(
            ctx, principal, bundle["id"], department, [str(r["case_id"]) for r in case_ids]
        )

    # --- reading ---

    async def own(self, principal: Principal, application_id: str) -> asyncpg.Record:
        row = await self.pool.fetchrow(
            "SELECT * FROM bff.life_applications WHERE id = $1",
            parse_uuid(application_id, "life_application"),
        )
        return await owned(self.pool, principal, "life_application", application_id, row)

    async def open_todos(self, person_id: str) -> list[OpenBundle]:
        rows = await self.pool.fetch(
            "SELECT id FROM bff.life_applications WHERE person_id = $1 ORDER BY created_at DESC LIMIT $2",
            person_id,
            _HOME_BUNDLES,
        )
        views = await asyncio.gather(*(self._view(row["id"], english=False) for row in rows))
        return [
            OpenBundle(
                application_id=view.id,
                event_name=view.event_name,
                state=view.state,
                state_label=view.state_label,
                next_kind=view.next_action.kind,
                next_text=view.next_action.text,
                members=len(view.members),
                concluded=sum(1 for m in view.members if m.case is not None and m.case.status in _ENDED),
                case_ids=frozenset(m.case.id for m in view.members if m.case is not None),
            )
            for view in views
            if view.state != "all_concluded"
        ]

    async def view(self, principal: Principal, application_id: str, *, english: bool) -> LifeApplicationOut:
        bundle = await self.own(principal, application_id)
        return await self._view(bundle["id"], english=english)

    async def _view(self, bundle_id: uuid.UUID, *, english: bool) -> LifeApplicationOut:
        bundle = await self.pool.fetchrow("SELECT * FROM bff.life_applications WHERE id = $1", bundle_id)
        assert bundle is not None
        rows = await self.pool.fetch(
            "SELECT * FROM bff.life_application_members WHERE application_id = $1 ORDER BY position",
            bundle_id,
        )
        details = await asyncio.gather(*(self.cases.detail_of(r["case_id"], english=english) for r in rows))
        members: list[MemberOut] = []
        statuses: list[str] = []
        for row, detail in zip(rows, details, strict=True):
            members.append(_member(bundle_id, row, detail, english))
            statuses.append(members[-1].case.status if members[-1].case else members[-1].state)
        event_name = bundle["event_id"]
        # A bundle withdrawn from the catalogue still shows its own members.
        with contextlib.suppress(ProblemError):
            event_name = self.catalogue.life_event_spec(bundle["event_id"]).name
        state = _state(statuses)
        dates = [m.case.promise_date for m in members if m.case and m.case.promise_date]
        hall = bundle["hall_items"] or []
        if isinstance(hall, str):
            hall = msgspec.json.decode(hall)
        answers = bundle["answers"]
        if isinstance(answers, str):
            answers = msgspec.json.decode(answers)
        created: datetime = bundle["created_at"]
        fees = _fees(bundle_id, members)
        return LifeApplicationOut(
            id=str(bundle_id),
            event_id=bundle["event_id"],
            event_name=event_name,
            region_code=bundle["region_code"],
            answers=dict(answers),
            submitted_at=display_time(created),
            state=state,
            state_label=STATE_LABELS[state][1 if english else 0],
            members=members,
            hall_items=[msgspec.convert(h, HallItemOut) for h in hall],
            latest_promise_date=max(dates) if dates else None,
            next_action=_next(members, fees, english),
            fees=fees,
        )


def _union(members: list[_Member]) -> list[FormMaterialOut]:
    """One entry per material name across the members' guides, in the order first asked for."""
    out: dict[str, FormMaterialOut] = {}
    types: dict[str, set[str | None]] = {}
    for member in members:
        for material in member.guide.materials:
            entry = out.get(material.name)
            if entry is None:
                entry = out[material.name] = FormMaterialOut(
                    name=material.name, required=False, needed_by=[], elicence_type=None
                )
            entry.needed_by.append(member.code)
            entry.required = entry.required or material.required
            types.setdefault(material.name, set()).add(material.elicence_type)
    for name, entry in out.items():
        kinds = types[name]
        # An e-licence stands in only where every item needing the material accepts the same one.
        entry.elicence_type = next(iter(kinds)) if len(kinds) == 1 else None
    return list(out.values())


def _member(bundle_id: uuid.UUID, row: asyncpg.Record, detail: CaseDetail | None, english: bool) -> MemberOut:
    case = detail.case if detail is not None and detail.case.project_no is not None else None
    state = "submitted" if case is not None else ("failed" if row["state"] == "failed" else "submitting")
    failure = None
    if state == "failed":
        failure = MemberFailure(
            code=str(row["failure_code"]),
            detail=str(row["failure_detail"] if english else row["failure_detail_zh"]),
        )
    fee = None
    if case is not None and detail is not None and detail.fee is not None:
        fee = MemberFee(
            fee_id=detail.fee.fee_id,
            total_fen=detail.fee.total_fen,
            owed_fen=detail.fee.owed_fen,
            issuing_department=detail.fee.issuing_department,
            pay_online=detail.fee.pay_online,
        )
    return MemberOut(
        item_code=row["item_code"],
        item_name=row["item_name"],
        state=state,  # type: ignore[arg-type]  # a MemberState by construction
        attempts=row["attempts"],
        case=case,
        failure=failure,
        retry=f"/api/v1/life-events/applications/{bundle_id}/members/{row['item_code']}/retry"
        if state == "failed"
        else None,
        fee=fee,
    )


def _state(statuses: list[str]) -> BundleState:
    if "failed" in statuses:
        return "some_failed"
    if "awaiting_supplement" in statuses:
        return "some_need_supplement"
    if "submitting" in statuses:
        return "submitting"
    if "not_accepted" in statuses:
        return "some_not_accepted"
    if all(s in _ENDED for s in statuses):
        return "all_concluded"
    if all(s in _ACCEPTED for s in statuses):
        return "all_accepted"
    return "submitted"


def _next(members: list[MemberOut], fees: FeesOut, english: bool) -> NextActionOut:
    """The one thing the resident should do now: retry a failed member, answer a 补正, pay a fee;
    else wait (or nothing: every member concluded)."""
    for m in members:
        if m.state == "failed":
            return NextActionOut(
                kind="retry_member",
                text=f"Submit {m.item_name} again" if english else f"重新提交“{m.item_name}”",
                item_code=m.item_code,
                case_id=None,
                supplement_id=None,
                href=m.retry,
            )
    for m in members:
        if m.case is not None and m.case.open_supplement_id:
            return NextActionOut(
                kind="answer_supplement",
                text=f"Answer the correction request of {m.item_name}"
                if english
                else f"补正“{m.item_name}”的材料",
                item_code=m.item_code,
                case_id=m.case.id,
                supplement_id=m.case.open_supplement_id,
                href=f"/api/v1/cases/{m.case.id}/supplements",
            )
    for d in fees.by_department:
        if d.pay is not None:
            return NextActionOut(
                kind="pay_fee",
                text=f"Pay {d.department}'s fees at once" if english else f"一次缴纳{d.department}的费用",
                item_code=None,
                case_id=None,
                supplement_id=None,
                href=d.pay,
                department=d.department,
            )
    done = all(m.case is not None and m.case.status in _ENDED | {"not_accepted"} for m in members)
    return NextActionOut(
        kind="done" if done else "wait",
        text=("Nothing to do" if english else "无需操作")
        if done
        else ("Wait for the departments" if english else "等待各部门办理"),
        item_code=None,
        case_id=None,
        supplement_id=None,
        href=None,
    )


def _fees(bundle_id: uuid.UUID, members: list[MemberOut]) -> FeesOut:
    """Fees summed across members, and per issuing department (each department's notices are paid
    to that department, all of them in one payment)."""
    by: dict[str, DepartmentFees] = {}
    for m in members:
        if m.fee is None or m.case is None:
            continue
        entry = by.setdefault(
            m.fee.issuing_department,
            DepartmentFees(department=m.fee.issuing_department, total_fen=0, owed_fen=0, case_ids=[]),
        )
        entry.total_fen += m.fee.total_fen
        entry.owed_fen += m.fee.owed_fen
        entry.case_ids.append(m.case.id)
    for entry in by.values():
        if entry.owed_fen > 0:
            entry.pay = f"/api/v1/life-events/applications/{bundle_id}/payments"
    return FeesOut(
        total_fen=sum(d.total_fen for d in by.values()),
        owed_fen=sum(d.owed_fen for d in by.values()),
        by_department=list(by.values()),
    )
