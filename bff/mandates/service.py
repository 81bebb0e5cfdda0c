"""代办 mandates: one resident (the principal) lets another (the agent) act for them.

The flow (README, "代办"): the agent makes a one-time invite code (valid 24 h) and tells it to the
principal, who grants a mandate naming it, in a session at real-name level 3, with a scope of
named actions and an expiry at most a year away; the agent accepts it; either side ends it at any
time. A guardian mandate (a minor's guardian) then waits in `pending_proof` until an operator has
checked the birth certificate or household register and recorded its reference.

While acting, the mandate is read from PostgreSQL on every request (`resolve`, called by
auth/guards.py for `X-Acting-For`): a revocation or an expiry is effective on the very next
request on every replica, with no cache to invalidate.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from adapters.errors import ProblemError
from adapters.pii import mask_name, mask_phone
from auth import audit, persons
from auth.acting import ACTIONS, Action, Mandated
from auth.crypto import PiiCrypto
from auth.principal import Principal
from bff.catalogue.service import CatalogueService
from bff.idempotency import IdemContext, Recorded
from bff.mandates.schemas import MAX_DAYS, InviteOut, MandateIn, MandateLists, MandateOut, Party, ProofIn
from bff.platform.clock import CHINA
from push import outbox
from push.topics import MandateChanged

INVITE_TTL = timedelta(hours=24)
_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read out over the phone
_CODE_LEN = 8


def _hash(code: str) -> bytes:
    return hashlib.sha256(code.encode()).digest()


def _display(moment: datetime | None) -> str | None:
    return moment.astimezone(CHINA).isoformat(timespec="seconds") if moment else None


def _must(row: asyncpg.Record | None) -> asyncpg.Record:
    assert row is not None  # an INSERT/UPDATE ... RETURNING of a row just read under its lock
    return row


def _problem(status: int, code: str, en: str, zh: str, **extra: Any) -> ProblemError:
    return ProblemError(en, detail_zh=zh, status=status, code=code, extra=extra or None)


class MandateService:
    def __init__(self, pool: asyncpg.Pool, crypto: PiiCrypto, catalogue: CatalogueService) -> None:
        self.pool = pool
        self.crypto = crypto
        self.catalogue = catalogue

    # --- the agent starts it ---

    async def invite(self, ctx: IdemContext, agent: Principal) -> Recorded[InviteOut]:
        code = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_LEN))
        person = await persons.load(self.pool, self.crypto, agent.person_id)
        async with self.pool.acquire() as conn, conn.transaction():
            expires = await conn.fetchval(
                """
                INSERT INTO bff.mandate_invites (code_hash, agent_id, expires_at)
                VALUES ($1, $2, now() + $3::interval) RETURNING expires_at
                """,
                _hash(code),
                agent.person_id,
                INVITE_TTL,
            )
            return await ctx.finish(
                conn,
                InviteOut(
                    code=code,
                    expires_at=_display(expires) or "",
                    agent_phone=mask_phone(person.phone) if person and person.phone else None,
                ),
            )

    # --- the principal grants it ---

    def _check(self, data: MandateIn) -> tuple[list[str], datetime]:
        for index, action in enumerate(data.actions):
            if action not in ACTIONS:
                raise _problem(
                    422,
                    "mandate_action_unknown",
                    f"actions[{index}]: {action[:32]} is not one of {', '.join(ACTIONS)}",
                    f"actions[{index}]：授权事项只能是 {', '.join(ACTIONS)}",
                    field=f"actions[{index}]",
                    allowed=list(ACTIONS),
                )
        for index, category in enumerate(data.categories):
            if not self.catalogue.is_topic(category):
                raise _problem(
                    422,
                    "mandate_category_unknown",
                    f"categories[{index}]: not a topic of the catalogue (see /api/v1/topics)",
                    f"categories[{index}]：不是事项目录中的主题（见 /api/v1/topics）",
                    field=f"categories[{index}]",
                )
        expires = data.expires_at
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=CHINA)  # a phone's local time is China time
        now = datetime.now(UTC)
        if not now < expires <= now + timedelta(days=MAX_DAYS):
            raise _problem(
                422,
                "mandate_expiry_invalid",
                f"expiresAt must be in the future and at most {MAX_DAYS} days away",
                f"expiresAt：授权期限须在将来且不超过 {MAX_DAYS} 天",
                field="expiresAt",
                maxDays=MAX_DAYS,
            )
        return sorted(set(data.actions)), expires

    async def grant(self, ctx: IdemContext, principal: Principal, data: MandateIn) -> Recorded[MandateOut]:
        actions, expires = self._check(data)
        mandate_id = ctx.request_id
        async with self.pool.acquire() as conn, conn.transaction():
            invite = await conn.fetchrow(
                """
                SELECT agent_id FROM bff.mandate_invites
                WHERE code_hash = $1 AND used_at IS NULL AND expires_at > now() FOR UPDATE
                """,
                _hash(data.invite_code),
            )
            if invite is None:
                raise _problem(
                    422,
                    "mandate_invite_invalid",
                    "the invite code is unknown, used or expired: ask for a new one",
                    "邀请码无效、已使用或已过期，请让代办人重新生成",
                    field="inviteCode",
                )
            if invite["agent_id"] == principal.person_id:
                raise _problem(
                    422,
                    "mandate_self_grant",
                    "this invite is your own: a mandate is for someone else",
                    "这是您本人的邀请码：不能授权给自己",
                    field="inviteCode",
                )
            await conn.execute(
                "UPDATE bff.mandate_invites SET used_at = now() WHERE code_hash = $1", _hash(data.invite_code)
            )
            row = _must(
                await conn.fetchrow(
                    """
                INSERT INTO bff.mandates (id, principal_id, agent_id, kind, actions, categories, status,
                    expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, 'offered', $7) RETURNING *
                """,
                    mandate_id,
                    principal.person_id,
                    invite["agent_id"],
                    data.kind,
                    actions,
                    sorted(set(data.categories)),
                    expires,
                )
            )
            await self._audit(conn, principal, "mandate.grant", row, "ok")
            return await ctx.finish(conn, await self._out(conn, row, principal.person_id))

    # --- the agent accepts, either side ends it, an operator proves a guardianship ---

    async def _row(self, conn: Any, mandate_id: str, person_id: str | None) -> asyncpg.Record:
        try:
            ident = uuid.UUID(mandate_id)
        except ValueError:
            ident = None
        row = (
            await conn.fetchrow("SELECT * FROM bff.mandates WHERE id = $1 FOR UPDATE", ident)
            if ident is not None
            else None
        )
        if row is None or (person_id is not None and person_id not in (row["principal_id"], row["agent_id"])):
            raise _problem(404, "mandate_not_found", f"no mandate {mandate_id[:64]}", "未找到该代办授权")
        found: asyncpg.Record = row
        return found

    async def accept(self, ctx: IdemContext, agent: Principal, mandate_id: str) -> Recorded[MandateOut]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._row(conn, mandate_id, agent.person_id)
            if row["agent_id"] != agent.person_id:
                raise _problem(404, "mandate_not_found", f"no mandate {mandate_id[:64]}", "未找到该代办授权")
            if row["status"] != "offered" or row["expires_at"] <= datetime.now(UTC):
                raise _problem(
                    409, "mandate_not_offered", f"the mandate is {row['status']}", "该授权不在待接受状态"
                )
            row = _must(
                await conn.fetchrow(
                    """
                UPDATE bff.mandates SET accepted_at = now(),
                    status = CASE WHEN kind = 'guardian' THEN 'pending_proof' ELSE 'active' END
                WHERE id = $1 RETURNING *
                """,
                    row["id"],
                )
            )
            await self._audit(conn, agent, "mandate.accept", row, row["status"])
            await self._tell(conn, row, "accepted", f"mandate:{row['id']}:accepted")
            return await ctx.finish(conn, await self._out(conn, row, agent.person_id))

    async def revoke(self, ctx: IdemContext, who: Principal, mandate_id: str) -> Recorded[MandateOut]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._row(conn, mandate_id, who.person_id)
            if row["status"] != "revoked":  # ending an ended mandate changes nothing
                row = _must(
                    await conn.fetchrow(
                        """
                    UPDATE bff.mandates SET status = 'revoked', revoked_at = now(), revoked_by = $2
                    WHERE id = $1 RETURNING *
                    """,
                        row["id"],
                        who.person_id,
                    )
                )
                await self._audit(conn, who, "mandate.revoke", row, "ok")
                await self._tell(conn, row, "revoked", f"mandate:{row['id']}:revoked")
            return await ctx.finish(conn, await self._out(conn, row, who.person_id))

    async def prove(
        self, ctx: IdemContext, staff: Principal, mandate_id: str, data: ProofIn
    ) -> Recorded[MandateOut]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self._row(conn, mandate_id, None)
            if row["kind"] != "guardian" or row["status"] != "pending_proof":
                raise _problem(
                    409,
                    "mandate_no_proof_needed",
                    f"the mandate is a {row['kind']} one, {row['status']}",
                    "该授权无需或已完成监护关系核验",
                )
            row = _must(
                await conn.fetchrow(
                    """
                UPDATE bff.mandates SET status = 'active', proof_ref = $2, proof_by = $3, proof_at = now()
                WHERE id = $1 RETURNING *
                """,
                    row["id"],
                    f"{data.proof_kind}:{data.reference}",
                    staff.person_id,
                )
            )
            await self._audit(conn, staff, "mandate.prove", row, data.proof_kind)
            return await ctx.finish(conn, await self._out(conn, row, row["principal_id"]))

    # --- reading ---

    async def lists(self, who: Principal) -> MandateLists:
        rows = await self.pool.fetch(
            """
            SELECT * FROM bff.mandates WHERE principal_id = $1 OR agent_id = $1
            ORDER BY created_at DESC, id DESC LIMIT 200
            """,
            who.person_id,
        )
        out = [await self._out(self.pool, r, who.person_id) for r in rows]
        await audit.record(
            self.pool,
            subject=who.person_id,
            action="mandates.read",
            object=f"person:{who.person_id}",
            result="masked",
            channel=who.channel,
        )
        return MandateLists(
            granted=[m for m in out if m.role == "principal"], held=[m for m in out if m.role == "agent"]
        )

    async def _party(self, conn: Any, person_id: str) -> Party:
        person = await persons.load(conn, self.crypto, person_id)
        return Party(
            person_id=person_id,
            name=mask_name(person.name) if person else "",
            phone=mask_phone(person.phone) if person and person.phone else None,
        )

    async def _out(self, conn: Any, row: asyncpg.Record, viewer: str) -> MandateOut:
        status = row["status"]
        if status != "revoked" and row["expires_at"] <= datetime.now(UTC):
            status = "expired"
        proof = row["proof_ref"].split(":", 1)[0] if row["proof_ref"] else None
        revoked_by: Literal["principal", "agent"] | None = None
        if row["revoked_by"] is not None:
            revoked_by = "principal" if row["revoked_by"] == row["principal_id"] else "agent"
        return MandateOut(
            id=str(row["id"]),
            role="principal" if viewer == row["principal_id"] else "agent",
            kind=row["kind"],
            status=status,
            actions=list(row["actions"]),
            categories=list(row["categories"]),
            expires_at=_display(row["expires_at"]) or "",
            principal=await self._party(conn, row["principal_id"]),
            agent=await self._party(conn, row["agent_id"]),
            created_at=_display(row["created_at"]) or "",
            accepted_at=_display(row["accepted_at"]),
            revoked_at=_display(row["revoked_at"]),
            revoked_by=revoked_by,
            proof_kind=proof,
        )

    async def _tell(
        self, conn: Any, row: asyncpg.Record, event: str, dedup: str, action: str | None = None
    ) -> None:
        """The principal's inbox (through the outbox, in the caller's transaction)."""
        agent = await self._party(conn, row["agent_id"])
        await outbox.enqueue(
            conn,
            "mandate.changed",
            row["principal_id"],
            dedup,
            MandateChanged(
                mandate_id=str(row["id"]),
                event=event,
                status=event,
                agent_name=agent.name,
                action=action,
                occurred_at=datetime.now(UTC).isoformat(),
            ),
        )

    async def _audit(self, conn: Any, who: Principal, action: str, row: asyncpg.Record, result: str) -> None:
        await audit.record(
            conn,
            subject=who.person_id,
            action=action,
            object=f"mandate:{row['id']};principal={row['principal_id']};agent={row['agent_id']}",
            result=result,
            channel=who.channel,
        )

    # --- acting (auth.acting.ActingResolver) ---

    async def resolve(self, agent_id: str, mandate_id: str, action: Action) -> Mandated:
        """The principal of `mandate_id` if it lets `agent_id` do `action` now; else a 403 problem.
        Read from PostgreSQL each time, so an ending is seen on the next request everywhere."""
        try:
            ident = uuid.UUID(mandate_id)
        except ValueError:
            ident = None
        row = (
            await self.pool.fetchrow(
                "SELECT id, principal_id, agent_id, status, actions, categories, expires_at"
                " FROM bff.mandates WHERE id = $1",
                ident,
            )
            if ident is not None
            else None
        )
        if row is None or row["agent_id"] != agent_id:
            raise _problem(403, "mandate_unknown", "you hold no such mandate", "您没有这项代办授权")
        if row["status"] == "revoked":
            raise _problem(403, "mandate_revoked", "the mandate was revoked", "该代办授权已撤销")
        if row["expires_at"] <= datetime.now(UTC):
            raise _problem(403, "mandate_expired", "the mandate has expired", "该代办授权已过期")
        if row["status"] == "offered":
            raise _problem(403, "mandate_not_accepted", "accept the mandate first", "请先接受该代办授权")
        if row["status"] == "pending_proof":
            raise _problem(
                403,
                "mandate_pending_proof",
                "a guardian mandate is usable once an operator has checked the proof of guardianship",
                "监护代办须经工作人员核验出生医学证明或户口簿后方可使用",
            )
        if action not in row["actions"]:
            raise _problem(
                403,
                "mandate_out_of_scope",
                f"the mandate does not cover {action}",
                f"该代办授权不包括此事项（{action}）",
                action=action,
                granted=list(row["actions"]),
            )
        # The principal hears of their agent's use once per action and China day, not per request.
        day = datetime.now(CHINA).date().isoformat()
        async with self.pool.acquire() as conn, conn.transaction():
            await self._tell(conn, row, "used", f"mandate:{ident}:used:{action}:{day}", action)
        categories = tuple(row["categories"])
        return Mandated(
            principal_id=row["principal_id"],
            categories=categories,
            item_codes=self.catalogue.codes_under(categories) if categories else None,
        )
