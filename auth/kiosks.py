"""The kiosk registry: staff register a device's public key and revoke it. Revoking a kiosk ends
its sessions at once and drops its cached key, so its next request is refused on every replica."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from adapters import context
from adapters.errors import ProblemError
from auth import audit, denylist, kiosk, sessions
from auth.principal import Principal
from auth.runtime import AuthRuntime


async def register(
    rt: AuthRuntime,
    staff: Principal,
    *,
    kiosk_id: str,
    name: str,
    hall_id: str,
    algorithm: str,
    public_key: bytes,
) -> None:
    if not kiosk.valid_kiosk_id(kiosk_id):
        raise ProblemError(
            "kioskId: 3-64 characters of [A-Za-z0-9_-]",
            status=400,
            code="validation_failed",
            detail_zh="kioskId：3 到 64 个 [A-Za-z0-9_-] 字符",
        )
    entry = kiosk.ALGORITHMS.get(algorithm)
    if entry is None:
        raise ProblemError(
            f"algorithm: one of {sorted(kiosk.ALGORITHMS)}",
            status=422,
            code="validation_failed",
            detail_zh=f"algorithm：须为 {sorted(kiosk.ALGORITHMS)} 之一",
        )
    if not entry[1](public_key):
        raise ProblemError(
            "publicKey: not a valid key for this algorithm",
            status=422,
            code="validation_failed",
            detail_zh="publicKey：不是该算法的有效公钥",
        )
    try:
        await rt.pool.execute(
            """
            INSERT INTO bff.kiosks (id, name, hall_id, algorithm, public_key, registered_by)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            kiosk_id,
            name,
            hall_id,
            algorithm,
            public_key,
            staff.person_id,
        )
    except asyncpg.UniqueViolationError:
        raise ProblemError(
            "a kiosk with this id is already registered",
            status=409,
            code="kiosk_exists",
            detail_zh="该编号的自助终端已注册",
        ) from None
    await audit.record(
        rt.pool,
        subject=staff.person_id,
        action="kiosk_register",
        object=f"kiosk:{kiosk_id}",
        result="success",
        channel="staff",
        request_id=context.request_id.get(),
    )


async def revoke(rt: AuthRuntime, staff: Principal, kiosk_id: str, *, now: datetime) -> int:
    done = await rt.pool.execute(
        """
        UPDATE bff.kiosks SET status = 'revoked', revoked_by = $2, revoked_at = now()
        WHERE id = $1 AND status = 'active'
        """,
        kiosk_id,
        staff.person_id,
    )
    if done.endswith(" 0"):
        exists = await rt.pool.fetchval("SELECT 1 FROM bff.kiosks WHERE id = $1", kiosk_id)
        if not exists:
            raise ProblemError(
                "no such kiosk", status=404, code="kiosk_not_found", detail_zh="未找到该自助终端"
            )
    await kiosk.forget_device(rt.redis, kiosk_id)
    ended = await sessions.revoke_all(rt.pool, now=now, reason="kiosk_revoked", kiosk_id=kiosk_id)
    await denylist.deny_sessions(rt.redis, ended, rt.deny_ttl_s)
    await audit.record(
        rt.pool,
        subject=staff.person_id,
        action="kiosk_revoke",
        object=f"kiosk:{kiosk_id}",
        result=f"ended_{len(ended)}",
        channel="staff",
        request_id=context.request_id.get(),
    )
    return len(ended)


class KioskRow(msgspec.Struct, frozen=True):
    id: str
    name: str
    hall_id: str
    algorithm: str
    status: str


async def list_all(rt: AuthRuntime, limit: int = 500) -> list[KioskRow]:
    """Registered kiosks for the staff console, by id."""
    rows = await rt.pool.fetch(
        "SELECT id, name, hall_id, algorithm, status FROM bff.kiosks ORDER BY id LIMIT $1", limit
    )
    return [KioskRow(r["id"], r["name"], r["hall_id"], r["algorithm"], r["status"]) for r in rows]


class KioskAttack(msgspec.Struct, frozen=True):
    kiosk_id: str
    failures: int
    locked_cards: int
    last_failure_at: datetime


async def under_attack(
    rt: AuthRuntime, *, minutes: int, threshold: int, limit: int = 100
) -> list[KioskAttack]:
    """Kiosks with at least `threshold` refused logins in the last `minutes` (from the audit log),
    with how many ID cards got locked there: the operator's view, since no kiosk is ever locked."""
    rows = await rt.pool.fetch(
        """
        SELECT substr(object, 7) AS kiosk_id,
               count(*) FILTER (WHERE action = 'login' AND result <> 'success') AS failures,
               count(*) FILTER (WHERE action = 'lockout') AS locked_cards,
               max(at) FILTER (WHERE action = 'login' AND result <> 'success') AS last_failure_at
        FROM bff.audit_log
        WHERE channel = 'kiosk' AND object LIKE 'kiosk:%' AND at > now() - make_interval(mins => $1)
        GROUP BY 1
        HAVING count(*) FILTER (WHERE action = 'login' AND result <> 'success') >= $2
        ORDER BY failures DESC, kiosk_id LIMIT $3
        """,
        minutes,
        threshold,
        limit,
    )
    return [
        KioskAttack(r["kiosk_id"], int(r["failures"]), int(r["locked_cards"]), r["last_failure_at"])
        for r in rows
    ]
