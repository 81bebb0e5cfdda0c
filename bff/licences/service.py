"""The e-licence wallet, 亮证 and its counter-side check, and "who used my data".

A licence belongs to the resident whose ID number is its holder code (the library is asked by
holder code, in a POST body; the number itself never leaves this module unmasked).

Showing (亮证): the library grants a single-use authorisation code for the licence (its TTL is
ours); we keep the code and hand out a signed payload `SXL1.<id and expiry>.<HMAC>` naming our show
row. A counter's check (a staff route) verifies the MAC and the expiry, then claims the row with
one conditional UPDATE, so only one check of one payload is ever accepted, whichever replica it
reaches; the claimed code then goes to the library, which records the use under the counter's
department. Each show is audited; each check, accepted or refused, is a row of
`bff.licence_checks` and an audit record of the staff member.

Who used my data: the resident's own audit records, the library's usage report (mirrored from its
commit-ordered feed, read when the first page is asked for) and the checks we refused ourselves,
merged newest first with the API's keyset cursor.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

import asyncpg
import asyncpg.pool
import msgspec

from adapters.elicence.client import ElicenceClient, ElicenceRefused
from adapters.elicence.schemas import Licence, Usage
from adapters.errors import BadUpstreamAnswer, ProblemError, UpstreamUnavailable
from adapters.pii import mask_id_number, mask_name, mask_phone
from auth import audit, persons
from auth.crypto import PiiCrypto
from auth.principal import Principal
from bff.appointments.service import AppointmentService
from bff.catalogue.service import CatalogueService
from bff.idempotency import IdemContext, Recorded
from bff.licences.schemas import (
    DataAccessItem,
    DataAccessPage,
    Issuer,
    LibraryFreshness,
    LicenceCheckIn,
    LicenceCheckOut,
    LicenceDetail,
    LicenceList,
    LicenceOut,
    RenewalForm,
    RenewalHall,
    RenewalItem,
    RenewalList,
    RenewalMaterial,
    RenewalSlot,
    RenewalTodo,
    ShowOut,
)
from bff.platform.logs import get_logger
from bff.platform.paging import keyset_after, keyset_page
from bff.platform.problems import CODES
from push import outbox
from push.topics import LicenceExpiring

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
log = get_logger("bff.licences")

CHINA = timezone(timedelta(hours=8))
SHOW_PURPOSE = "亮证"
COPY_VALID_DAYS = 30  # a copy's watermark runs this long at most (the library's rule)
_PREFIX = "SXL1"
_LICENCE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_RENEWAL_HALLS = 3
USAGE_BUDGET_S = 1.0  # the library's usage report's share of a data-access page
_FEED_PAGES = 5  # per first page of data-access: at most this many feed pages are read
REMIND_DAYS = (7, 30, 90)  # ascending: the nearest threshold a licence is within
# The catalogue item that renews a licence type (by its name in the item library).
RENEWAL_ITEMS = {
    "11100000000000000001": "居民身份证换领",
    "11100000000000000050": "机动车驾驶证有效期满换证",
}

GRADE_TEXT = {
    "A": "发证机关签发，可直接使用",
    "B": "已在窗口与原件核对",
    "C": "本人上传，需核验原件",
    "D": "本人声明",
}
# The library's refusals of a check, in our words.
_CHECK_REFUSALS = {
    "auth_code_used": "licence_show_used",
    "auth_code_expired": "licence_show_expired",
    "auth_code_unknown": "licence_show_invalid",
    "licence_expired": "licence_not_valid",
    "licence_revoked": "licence_not_valid",
    "licence_not_found": "licence_not_found",
}
_TEXTS: dict[str, tuple[str, str]] = {
    "personal_data_read": ("查看本人信息", "Viewed my personal data"),
    "acting.read_cases": ("代办人查看办件", "My agent read my cases"),
    "acting.apply": ("代办人代为申办", "My agent applied for me"),
    "acting.book": ("代办人代为预约", "My agent booked for me"),
    "acting.pay": ("代办人代为缴费", "My agent paid for me"),
    "mandate.grant": ("授予代办授权", "Granted a mandate"),
    "mandate.accept": ("接受代办授权", "Accepted a mandate"),
    "mandate.revoke": ("结束代办授权", "Ended a mandate"),
    "mandates.read": ("查看代办授权", "Viewed my mandates"),
    "licence.list": ("查看电子证照列表", "Viewed my licence wallet"),
    "licence.read": ("查看电子证照", "Viewed a licence"),
    "licence.show": ("亮证", "Showed a licence"),
    "verify": ("核验电子证照", "Checked a licence"),
    "copy": ("调取电子证照复印件", "Took a watermarked copy of a licence"),
    "check": ("核验亮证码", "Checked a shown licence"),
    "messages.list": ("查看消息", "Viewed my messages"),
    "message.read_detail": ("查看消息详情", "Viewed a message"),
    "delivery.read": ("查看邮寄信息", "Viewed a delivery"),
    "data_access.read": ("查看数据使用记录", "Viewed who used my data"),
}


def _text(action: str, lang: str) -> str:
    zh, en = _TEXTS.get(action, (action, action))
    return en if lang == "en" else zh


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def watermark(issuer: str, until: date) -> str:
    return (
        f"此件由{issuer}提供，仅供办理政务服务事项时使用，有效期至{until.year}年{until.month}月{until.day}日"
    )


def licence_out(licence: Licence) -> LicenceOut:
    return LicenceOut(**_fields(licence))


def _fields(licence: Licence) -> dict[str, Any]:
    return {
        "id": licence.licence_id,
        "type_code": licence.type_code,
        "type_name": licence.type_name,
        "number": mask_id_number(licence.licence_no),
        "holder_name": mask_name(licence.holder_name),
        "holder_type": licence.holder_type,
        "issuer": Issuer(licence.issuer_name, licence.issuer_code),
        "issue_date": licence.issue_date,
        "valid_from": licence.valid_from,
        "valid_to": licence.valid_to,
        "long_term": licence.long_term,
        "status": licence.status,
        "trust_grade": licence.trust_grade,
        "trust_grade_text": GRADE_TEXT.get(licence.trust_grade, ""),
        "area_code": licence.area_code,
    }


class _Claim(msgspec.Struct, frozen=True, array_like=True):
    show_id: str
    expires: int  # unix seconds


def _refused(code: str, detail: str, zh: str) -> ProblemError:
    return ProblemError(detail, detail_zh=zh, status=CODES[code].status, code=code)


class LicenceService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        library: ElicenceClient,
        crypto: PiiCrypto,
        *,
        show_key: bytes,
        show_ttl_s: int,
        catalogue: CatalogueService | None = None,
        appointments: AppointmentService | None = None,
    ) -> None:
        # Read ports for the renewal to-do: the renewal item and its halls, their free slots.
        self.catalogue = catalogue
        self.appointments = appointments
        self.pool = pool
        self.library = library
        self.crypto = crypto
        self._key = show_key
        self.show_ttl_s = show_ttl_s

    # --- the wallet ---

    async def _holder(self, principal: Principal) -> str | None:
        person = await persons.load(self.pool, self.crypto, principal.person_id)
        return person.id_number if person is not None else None

    async def _own(self, principal: Principal, licence_id: str) -> tuple[str, Licence]:
        if not _LICENCE_ID.match(licence_id):
            # Not an id the library gives out: nothing to ask it (and nothing to sign oddly encoded).
            raise ProblemError(
                f"no licence {licence_id[:64]}",
                detail_zh="未找到该电子证照",
                status=404,
                code="licence_not_found",
            )
        holder = await self._holder(principal)
        try:
            licence = await self.library.licence(licence_id)
        except ElicenceRefused as exc:
            if exc.reason != "licence_not_found":
                raise BadUpstreamAnswer(
                    f"elicence refused a read: {exc.reason}", detail_zh=f"电子证照库拒绝读取：{exc.reason}"
                ) from None
            licence = None
        if licence is not None and holder is not None and licence.holder_code == holder:
            return holder, licence
        if licence is not None:
            await audit.record(
                self.pool,
                subject=principal.person_id,
                action="licence.access",
                object=f"licence:{licence_id}",
                result="denied_not_owner",
                channel=principal.channel,
            )
        raise ProblemError(
            f"no licence {licence_id[:64]}",
            detail_zh="未找到该电子证照",
            status=404,
            code="licence_not_found",
        )

    async def _audit_read(self, principal: Principal, action: str, obj: str) -> None:
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action=action,
            object=obj,
            result="masked",
            channel=principal.channel,
        )

    async def wallet(self, principal: Principal) -> LicenceList:
        holder = await self._holder(principal)
        items: list[LicenceOut] = []
        if holder is not None:
            try:
                found = await self.library.licences(holder)
            except ElicenceRefused as exc:
                raise BadUpstreamAnswer(
                    f"elicence refused a search: {exc.reason}", detail_zh=f"电子证照库拒绝查询：{exc.reason}"
                ) from None
            items = [licence_out(lic) for lic in found.licences]
        await self._audit_read(principal, "licence.list", f"person:{principal.person_id}")
        return LicenceList(items=items)

    async def detail(
        self, principal: Principal, licence_id: str, *, today: date | None = None
    ) -> LicenceDetail:
        _, licence = await self._own(principal, licence_id)
        day = today or datetime.now(CHINA).date()
        until = day + timedelta(days=COPY_VALID_DAYS)
        if licence.valid_to is not None:
            until = min(until, date.fromisoformat(licence.valid_to))
        await self._audit_read(principal, "licence.read", f"licence:{licence_id}")
        return LicenceDetail(
            **_fields(licence),
            watermark_text=watermark(licence.issuer_name, until),
            watermark_valid_until=until.isoformat(),
        )

    # --- 亮证 ---

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, f"{_PREFIX}.{body}".encode(), hashlib.sha256).digest()[:16])

    def payload(self, show_id: uuid.UUID, expires_at: datetime) -> str:
        body = _b64(msgspec.json.encode(_Claim(str(show_id), int(expires_at.timestamp()))))
        return f"{_PREFIX}.{body}.{self._sign(body)}"

    def _read_payload(self, payload: str) -> _Claim | None:
        """The claim of a payload we signed, or None (forged, altered, not ours)."""
        prefix, _, rest = payload.partition(".")
        body, _, mac = rest.partition(".")
        # Bytes, not str: compare_digest refuses non-ASCII text, and a scanner may send anything.
        if prefix != _PREFIX or not body or not hmac.compare_digest(self._sign(body).encode(), mac.encode()):
            return None
        try:
            claim = msgspec.json.decode(_unb64(body), type=_Claim)
            uuid.UUID(claim.show_id)
        except (ValueError, binascii.Error, msgspec.DecodeError):
            return None
        return claim

    async def show(self, ctx: IdemContext, principal: Principal, licence_id: str) -> Recorded[ShowOut]:
        holder, licence = await self._own(principal, licence_id)
        if licence.status != "valid":
            raise ProblemError(
                f"the licence is {licence.status}",
                detail_zh="该证照已过期或已注销",
                code="licence_not_valid",
                status=409,
            )
        show_id = ctx.request_id
        try:
            # The request id is the show's: a re-run after a lost answer gets the same code back.
            code = await self.library.grant(
                request_id=str(show_id),
                licence_id=licence_id,
                holder_code=holder,
                purpose=SHOW_PURPOSE,
                ttl_s=self.show_ttl_s,
            )
        except ElicenceRefused as exc:
            if exc.reason in ("licence_expired", "licence_revoked"):
                raise ProblemError(
                    "the licence is no longer valid",
                    detail_zh="该证照已失效",
                    code="licence_not_valid",
                    status=409,
                ) from None
            raise BadUpstreamAnswer(
                f"elicence refused a grant: {exc.reason}", detail_zh=f"电子证照库拒绝授权：{exc.reason}"
            ) from None
        expires_at = datetime.fromisoformat(code.expires_at)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO bff.licence_shows (id, person_id, licence_id, type_name, auth_code, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING
                """,
                show_id,
                principal.person_id,
                licence_id,
                licence.type_name,
                code.auth_code,
                expires_at,
            )
            await audit.record(
                conn,
                subject=principal.person_id,
                action="licence.show",
                object=f"licence:{licence_id}",
                result="shown",
                channel=principal.channel,
            )
            return await ctx.finish(
                conn,
                ShowOut(
                    show_id=str(show_id),
                    licence_id=licence_id,
                    type_name=licence.type_name,
                    payload=self.payload(show_id, expires_at),
                    expires_at=_stamp(expires_at),
                    ttl_seconds=self.show_ttl_s,
                ),
            )

    # --- the counter's check ---

    async def _log_check(
        self,
        staff: Principal,
        data: LicenceCheckIn,
        check_id: uuid.UUID,
        show: asyncpg.Record | None,
        *,
        refusal: str | None,
        usage_id: str | None = None,
        conn: Conn | None = None,
    ) -> None:
        async def write(c: Conn | asyncpg.Pool) -> None:
            await c.execute(
                """
                INSERT INTO bff.licence_checks (id, show_id, person_id, licence_id, type_name, staff_id,
                    department_code, department_name, channel, purpose, result, refusal, usage_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING
                """,
                check_id,
                show["id"] if show else None,
                show["person_id"] if show else None,
                show["licence_id"] if show else None,
                show["type_name"] if show else None,
                staff.person_id,
                data.department_code,
                data.department_name,
                data.channel,
                data.purpose,
                "refused" if refusal else "verified",
                refusal,
                usage_id,
            )
            await audit.record(
                c,
                subject=staff.person_id,
                action="licence.check",
                object=f"licence_show:{show['id']}" if show else "licence_show:-",
                result=refusal or "verified",
                channel=staff.channel,
            )

        if conn is not None:
            await write(conn)
        else:
            async with self.pool.acquire() as c, c.transaction():
                await write(c)
        log.info("licence_checked", result=refusal or "verified", channel=data.channel)

    async def _refuse(
        self,
        staff: Principal,
        data: LicenceCheckIn,
        check_id: uuid.UUID,
        show: asyncpg.Record | None,
        code: str,
        usage_id: str | None = None,
    ) -> ProblemError:
        await self._log_check(staff, data, check_id, show, refusal=code, usage_id=usage_id)
        details = {
            "licence_show_invalid": ("not a licence code this platform issued", "不是本平台出具的亮证码"),
            "licence_show_expired": (
                "the shown licence code has expired; ask the holder to show it again",
                "亮证码已过期，请持证人重新亮证",
            ),
            "licence_show_used": (
                "this shown licence code was already checked",
                "该亮证码已核验过，不能重复使用",
            ),
            "licence_not_valid": ("the licence has expired or was revoked", "该证照已过期或已注销"),
            "licence_not_found": ("the licence is no longer in the library", "电子证照库中已无该证照"),
        }
        return _refused(code, *details[code])

    async def check(
        self, ctx: IdemContext, staff: Principal, data: LicenceCheckIn, *, now: datetime | None = None
    ) -> Recorded[LicenceCheckOut]:
        moment = now or datetime.now(UTC)
        check_id = ctx.request_id
        claim = self._read_payload(data.payload.strip())
        if claim is None:
            raise await self._refuse(staff, data, check_id, None, "licence_show_invalid")
        show_id = uuid.UUID(claim.show_id)
        # One statement decides, on every replica alike: unchecked (or claimed by this very check,
        # re-run after a lost answer) and not expired.
        show = await self.pool.fetchrow(
            """
            UPDATE bff.licence_shows SET checked_at = now(), checked_by_request = $2
            WHERE id = $1 AND expires_at > $3 AND (checked_at IS NULL OR checked_by_request = $2)
            RETURNING *
            """,
            show_id,
            check_id,
            moment,
        )
        if show is None:
            known = await self.pool.fetchrow("SELECT * FROM bff.licence_shows WHERE id = $1", show_id)
            if known is None:
                raise await self._refuse(staff, data, check_id, None, "licence_show_invalid")
            code = "licence_show_expired" if known["expires_at"] <= moment else "licence_show_used"
            raise await self._refuse(staff, data, check_id, known, code)
        try:
            verified = await self.library.verify(
                request_id=str(check_id),
                auth_code=show["auth_code"],
                purpose=data.purpose,
                channel=data.channel,
                department_code=data.department_code,
                department_name=data.department_name,
            )
        except ElicenceRefused as exc:
            ours = _CHECK_REFUSALS.get(exc.reason)
            if ours is None:
                await self._release(show_id, check_id)
                raise BadUpstreamAnswer(
                    f"elicence refused a check: {exc.reason}", detail_zh=f"电子证照库拒绝核验：{exc.reason}"
                ) from None
            raise await self._refuse(staff, data, check_id, show, ours, exc.refusal.usage_id) from None
        except (UpstreamUnavailable, BadUpstreamAnswer):
            # Nothing was checked for the counter: the holder's payload stays good for a retry.
            await self._release(show_id, check_id)
            raise
        checked_at = datetime.fromisoformat(verified.verified_at)
        async with self.pool.acquire() as conn, conn.transaction():
            await self._mirror(conn, show["person_id"], verified.verification_id, show, data, checked_at)
            await self._log_check(
                staff, data, check_id, show, refusal=None, usage_id=verified.verification_id, conn=conn
            )
            return await ctx.finish(
                conn,
                LicenceCheckOut(
                    result="verified",
                    check_id=str(check_id),
                    checked_at=_stamp(checked_at),
                    department_name=verified.department_name,
                    licence=licence_out(verified.licence),
                ),
            )

    async def _release(self, show_id: uuid.UUID, check_id: uuid.UUID) -> None:
        await self.pool.execute(
            """
            UPDATE bff.licence_shows SET checked_at = NULL, checked_by_request = NULL
            WHERE id = $1 AND checked_by_request = $2
            """,
            show_id,
            check_id,
        )

    async def _mirror(
        self,
        conn: Conn,
        person_id: str,
        usage_id: str,
        show: asyncpg.Record,
        data: LicenceCheckIn,
        at: datetime,
    ) -> None:
        """The use the library just recorded, in the resident's mirror at once (the feed brings the
        same row later; the usage id makes it one)."""
        await conn.execute(
            """
            INSERT INTO bff.licence_usages (id, usage_id, person_id, licence_id, type_name, action, result,
                department_code, department_name, purpose, channel, used_at)
            VALUES ($1, $2, $3, $4, $5, 'verify', 'verified', $6, $7, $8, $9, $10)
            ON CONFLICT (usage_id) DO NOTHING
            """,
            _usage_row_id(usage_id),
            usage_id,
            person_id,
            show["licence_id"],
            show["type_name"],
            data.department_code,
            data.department_name,
            data.purpose,
            data.channel,
            at,
        )

    # --- renewal reminders ---

    async def remind_expiring(self, *, today: date | None = None, batch: int = 200) -> int:
        """The job: every resident's licences ending within 90 days are told once per threshold
        (90, 30, 7 days; the nearest one not yet passed), through the outbox. The dedup key holds the
        licence's end date, so a renewed licence (a new end) starts over. Residents are read in
        keyset batches; the library is asked per resident (it has no "expiring" query)."""
        day = today or datetime.now(CHINA).date()
        told, after = 0, uuid.UUID(int=0)
        while True:
            rows = await self.pool.fetch(
                "SELECT id, id_number_enc FROM bff.persons WHERE id_number_enc IS NOT NULL AND id > $1 "
                "ORDER BY id LIMIT $2",
                after,
                batch,
            )
            for row in rows:
                holder = self.crypto.decrypt("id_number", row["id_number_enc"])
                found = await self.library.licences(holder)  # unavailable: the run ends, the next retries
                for licence in found.licences:
                    told += await self._remind(str(row["id"]), licence, day)
            if len(rows) < batch:
                return told
            after = rows[-1]["id"]

    async def _remind(self, person_id: str, licence: Licence, day: date) -> int:
        if licence.status != "valid" or licence.valid_to is None:
            return 0
        days_left = (date.fromisoformat(licence.valid_to) - day).days
        threshold = next((t for t in REMIND_DAYS if days_left <= t), None)
        if threshold is None or days_left < 0:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            sent = await outbox.enqueue(
                conn,
                "licence.expiring",
                person_id,
                f"licence-expiring:{licence.licence_id}:{licence.valid_to}:{threshold}",
                LicenceExpiring(
                    licence_id=licence.licence_id,
                    type_name=licence.type_name,
                    valid_to=licence.valid_to,
                    days_left=days_left,
                    threshold=threshold,
                ),
            )
        return int(sent)

    # --- the renewal to-do ---

    async def renewals(self, principal: Principal, near: tuple[float, float] | None = None) -> RenewalList:
        """Each licence ending within 90 days, with its renewal item in the licence's region, a form
        started from the profile, the nearest hall handling the item and its first free slot. One
        part that cannot be found leaves the to-do with that part missing, never without the to-do."""
        person = await persons.load(self.pool, self.crypto, principal.person_id)
        todos: list[RenewalTodo] = []
        if person is not None and person.id_number:
            found = await self.library.licences(person.id_number)
            day = datetime.now(CHINA).date()
            for licence in found.licences:
                if licence.status != "valid" or licence.valid_to is None:
                    continue
                days_left = (date.fromisoformat(licence.valid_to) - day).days
                if 0 <= days_left <= REMIND_DAYS[-1]:
                    todos.append(await self._renewal(person, licence, days_left, near))
        todos.sort(key=lambda t: t.days_left)
        await self._audit_read(principal, "licence.renewals", f"person:{principal.person_id}")
        return RenewalList(items=todos)

    async def _renewal(
        self, person: persons.Person, licence: Licence, days_left: int, near: tuple[float, float] | None
    ) -> RenewalTodo:
        todo = RenewalTodo(
            licence=licence_out(licence),
            days_left=days_left,
            item=None,
            form=None,
            hall=None,
            slot=None,
            status="no_item",
        )
        name = RENEWAL_ITEMS.get(licence.type_code)
        if name is None or self.catalogue is None or self.appointments is None:
            return todo
        try:
            page = self.catalogue.search(
                name, region=licence.area_code, audience=None, topic=None, limit=5, cursor=None
            )
            hit = next((i for i in page.items if i.name == name), None)
            if hit is None:
                return todo
            guide = await self.catalogue.guide(hit.code, licence.area_code)
        except (ProblemError, UpstreamUnavailable) as exc:
            log.warning("renewal_item_unavailable", code=exc.code)
            todo.status = "unavailable"
            return todo
        todo.item = RenewalItem(code=guide.code, name=guide.name, region_code=guide.region_code)
        todo.form = RenewalForm(
            item_code=guide.code,
            region_code=guide.region_code,
            contact_name=mask_name(person.name) if person.name else None,
            contact_phone=mask_phone(person.phone) if person.phone else None,
            materials=[
                RenewalMaterial(name=m.name, elicence_type=licence.type_code, licence_id=licence.licence_id)
                for m in guide.materials
                if m.elicence_type == licence.type_code
            ],
        )
        todo.status = "no_slot"
        halls = sorted(guide.halls, key=lambda h: _km(near, h.lat, h.lng) if near else 0.0)
        # The nearest hall that takes bookings for the item and has a free seat; a few at most.
        for hall in halls[:_RENEWAL_HALLS]:
            try:
                calendar = await self.appointments.calendar(hall.id, guide.code)
                if calendar.first_bookable is None:
                    continue
                slots = await self.appointments.day_slots(
                    hall.id, guide.code, date.fromisoformat(calendar.first_bookable)
                )
            except (ProblemError, UpstreamUnavailable) as exc:
                log.info("renewal_hall_skipped", code=exc.code)
                if isinstance(exc, UpstreamUnavailable):
                    todo.status = "unavailable"
                    return todo
                continue
            free = next((slot for slot in slots if slot.available > 0), None)
            if free is None:
                continue
            todo.hall = RenewalHall(
                id=hall.id,
                name=hall.name,
                address=hall.address,
                distance_km=round(_km(near, hall.lat, hall.lng), 1) if near else None,
            )
            todo.slot = RenewalSlot(
                slot_id=free.slot_id,
                starts_at=_stamp(free.starts_at),
                ends_at=_stamp(free.ends_at),
                available=free.available,
            )
            todo.status = "ok"
            return todo
        return todo

    # --- who used my data ---

    async def sync_usages(self, person_id: str, holder: str) -> datetime:
        """Read the library's feed for this resident from the kept cursor; the time of the read."""
        since = await self.pool.fetchval(
            "SELECT since FROM bff.licence_usage_cursors WHERE person_id = $1", person_id
        )
        since = int(since or 0)
        for _ in range(_FEED_PAGES):
            page = await self.library.usages(holder, since)
            if page.usages:
                await self._store_usages(person_id, page.usages)
            since = max(since, page.next_since)
            if len(page.usages) < 200:
                break
        synced = datetime.now(UTC)
        await self.pool.execute(
            """
            INSERT INTO bff.licence_usage_cursors (person_id, since, synced_at) VALUES ($1, $2, $3)
            ON CONFLICT (person_id) DO UPDATE
            SET since = GREATEST(bff.licence_usage_cursors.since, EXCLUDED.since), synced_at = EXCLUDED.synced_at
            """,
            person_id,
            since,
            synced,
        )
        return synced

    async def _store_usages(self, person_id: str, usages: list[Usage]) -> None:
        await self.pool.executemany(
            """
            INSERT INTO bff.licence_usages (id, usage_id, person_id, licence_id, type_name, action, result,
                refusal, department_code, department_name, purpose, channel, used_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT (usage_id) DO UPDATE SET result = EXCLUDED.result, refusal = EXCLUDED.refusal
            """,
            [
                (
                    _usage_row_id(u.usage_id),
                    u.usage_id,
                    person_id,
                    u.licence_id,
                    u.type_name,
                    u.action,
                    u.result,
                    u.refusal,
                    u.department_code,
                    u.department_name,
                    u.purpose,
                    u.channel,
                    datetime.fromisoformat(u.used_at),
                )
                for u in usages
            ],
        )

    async def data_access(
        self, principal: Principal, limit: int, cursor: str | None, lang: Literal["zh", "en"] = "zh"
    ) -> DataAccessPage:
        moment, ident = keyset_after(cursor)
        freshness = await self._library_freshness(principal, first_page=cursor is None)
        rows = await self.pool.fetch(_DATA_ACCESS, principal.person_id, moment, ident, limit + 1)
        shown, following = keyset_page(rows, limit, "at")
        await audit.record(
            self.pool,
            subject=principal.person_id,
            action="data_access.read",
            object=f"person:{principal.person_id}",
            result="ok",
            channel=principal.channel,
        )
        return DataAccessPage(
            items=[_access_item(r, lang) for r in shown], next_cursor=following, licence_library=freshness
        )

    async def _library_freshness(self, principal: Principal, *, first_page: bool) -> LibraryFreshness:
        holder = await self._holder(principal)
        if holder is None:
            return LibraryFreshness(status="ok", as_of=_stamp(datetime.now(UTC)))
        if first_page:
            try:
                # A slow library costs the page at most this much; what was mirrored is served.
                async with asyncio.timeout(USAGE_BUDGET_S):
                    synced_now = await self.sync_usages(principal.person_id, holder)
                return LibraryFreshness(status="ok", as_of=_stamp(synced_now))
            except (UpstreamUnavailable, BadUpstreamAnswer, ElicenceRefused, TimeoutError) as exc:
                log.warning("licence_usages_unavailable", error=type(exc).__name__)
        synced = await self.pool.fetchval(
            "SELECT synced_at FROM bff.licence_usage_cursors WHERE person_id = $1", principal.person_id
        )
        if synced is None:
            return LibraryFreshness(status="unavailable", as_of=None)
        return LibraryFreshness(status="stale" if first_page else "ok", as_of=_stamp(synced))


def _km(near: tuple[float, float] | None, lat: float, lng: float) -> float:
    """Great-circle distance in km (haversine): halls are a few km apart, so this is plenty."""
    if near is None:
        return 0.0
    lat1, lng1, lat2, lng2 = map(math.radians, (near[0], near[1], lat, lng))
    a = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lng2 - lng1) / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def _usage_row_id(usage_id: str) -> uuid.UUID:
    return uuid.UUID(hashlib.md5(f"usage:{usage_id}".encode(), usedforsecurity=False).hexdigest())


# Three sources, one order: (at, id) descending, the id a uuid in each (md5 of the source's own key
# for audit rows and library uses, so the same row always has the same cursor position).
_DATA_ACCESS = """
SELECT * FROM (
    SELECT md5('audit:' || seq)::uuid AS id, at, 'bff' AS source, action, object, result, channel,
           NULL::text AS department_name, NULL::text AS department_code, NULL::text AS purpose,
           NULL::text AS type_name
    FROM bff.audit_log
    WHERE subject = $1 AND ($2::timestamptz IS NULL OR (at, md5('audit:' || seq)::uuid) < ($2, $3))
    UNION ALL
    SELECT id, used_at, 'elicence_library', action, 'licence:' || licence_id, result, channel,
           department_name, department_code, purpose, type_name
    FROM bff.licence_usages
    WHERE person_id = $1 AND ($2::timestamptz IS NULL OR (used_at, id) < ($2, $3))
    UNION ALL
    SELECT id, at, 'counter', 'check', 'licence:' || licence_id, refusal, channel,
           department_name, department_code, purpose, type_name
    FROM bff.licence_checks
    WHERE person_id = $1 AND usage_id IS NULL AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
) merged
ORDER BY at DESC, id DESC
LIMIT $4
"""


def _access_item(row: asyncpg.Record, lang: Literal["zh", "en"]) -> DataAccessItem:
    what = _text(row["action"], lang)
    if row["type_name"]:
        what = f"{what}：{row['type_name']}" if lang == "zh" else f"{what}: {row['type_name']}"
    by_department = row["source"] != "bff"
    # An agent's action (auth.audit.record): "<channel>;agent=<person id>;mandate=<id>".
    channel, _, acting = str(row["channel"]).partition(";agent=")
    agent = acting.split(";", 1)[0] if acting else None
    return DataAccessItem(
        id=str(row["id"]),
        at=_stamp(row["at"]),
        source=row["source"],
        actor="department" if by_department else "agent" if agent else "self",
        agent=agent,
        channel=channel,
        department_name=row["department_name"],
        department_code=row["department_code"],
        action=row["action"],
        what=what,
        why=row["purpose"],
        result=row["result"],
    )
