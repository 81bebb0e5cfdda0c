"""Sessions: one refresh-token family each, rotated on every use, with reuse detection.

Refresh tokens are 256-bit random values; only their SHA-256 is stored. A session row keeps the
hash of the current token and of the one before it:

- presenting the current token rotates it (the old one becomes `previous`);
- presenting `previous` within the grace window after that rotation issues a new current token
  (the client never got the answer; the token it missed is dropped from the chain);
- presenting anything else of the family — `previous` after the window, or any older token —
  is reuse: the whole family is revoked at once.

The row is locked for the decision, so concurrent refreshes of one family are serialised. Every
function takes `now` so that the rules are exercised with a controlled clock in tests.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import msgspec

from auth.principal import Channel

_PREFIX = "sxr_"

Outcome = Literal["rotated", "graced", "reused", "revoked", "expired", "unknown", "wrong_device"]


class Lifetimes(msgspec.Struct, frozen=True):
    idle_s: int
    absolute_s: int


class Session(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    person_id: str
    channel: Channel
    level: int
    openid: str | None
    kiosk_id: str | None
    idle_expires_at: datetime
    absolute_expires_at: datetime


class Refreshed(msgspec.Struct, frozen=True, kw_only=True):
    outcome: Outcome
    session: Session | None = None
    refresh_token: str | None = None


def new_refresh_token() -> tuple[str, bytes]:
    token = _PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return token, hash_token(token)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _session(row: Any) -> Session:
    return Session(
        id=str(row["id"]),
        person_id=str(row["person_id"]),
        channel=row["channel"],
        level=row["level"],
        openid=row["openid"],
        kiosk_id=row["kiosk_id"],
        idle_expires_at=row["idle_expires_at"],
        absolute_expires_at=row["absolute_expires_at"],
    )


async def create(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    person_id: str,
    channel: Channel,
    level: int,
    lifetimes: Lifetimes,
    now: datetime,
    openid: str | None = None,
    kiosk_id: str | None = None,
    device: str | None = None,
) -> tuple[Session, str]:
    token, token_hash = new_refresh_token()
    session_id = uuid.uuid4()
    absolute = now + timedelta(seconds=lifetimes.absolute_s)
    idle = min(now + timedelta(seconds=lifetimes.idle_s), absolute)
    row = await conn.fetchrow(
        """
        WITH s AS (
            INSERT INTO bff.sessions (id, person_id, channel, level, openid, kiosk_id, device, current_hash,
                                      created_at, last_used_at, idle_expires_at, absolute_expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)
            RETURNING *
        ), t AS (
            INSERT INTO bff.refresh_tokens (token_hash, session_id, issued_at) VALUES ($8, $1, $9)
        )
        SELECT * FROM s
        """,
        session_id,
        uuid.UUID(person_id),
        channel,
        level,
        openid,
        kiosk_id,
        device,
        token_hash,
        now,
        idle,
        absolute,
    )
    return _session(row), token


async def refresh(
    pool: asyncpg.Pool,
    token: str,
    *,
    now: datetime,
    grace_s: int,
    lifetimes: dict[str, Lifetimes],
    kiosk_id: str | None = None,
) -> Refreshed:
    """`kiosk_id`: the kiosk that signed this request, if any; a kiosk session refreshes only there."""
    token_hash = hash_token(token)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT s.* FROM bff.refresh_tokens t JOIN bff.sessions s ON s.id = t.session_id
            WHERE t.token_hash = $1
            FOR UPDATE OF s
            """,
            token_hash,
        )
        if row is None:
            return Refreshed(outcome="unknown")
        session = _session(row)
        if row["revoked_at"] is not None:
            return Refreshed(outcome="revoked", session=session)
        if now >= row["idle_expires_at"] or now >= row["absolute_expires_at"]:
            return Refreshed(outcome="expired", session=session)
        if row["kiosk_id"] is not None and row["kiosk_id"] != kiosk_id:
            return Refreshed(outcome="wrong_device", session=session)
        graced = (
            token_hash == row["previous_hash"]
            and row["rotated_at"] is not None
            and now - row["rotated_at"] <= timedelta(seconds=grace_s)
        )
        if token_hash != row["current_hash"] and not graced:
            await conn.execute(
                "UPDATE bff.sessions SET revoked_at = $2, revoke_reason = 'refresh_reuse' WHERE id = $1",
                row["id"],
                now,
            )
            return Refreshed(outcome="reused", session=session)
        new_token, new_hash = new_refresh_token()
        life = lifetimes[row["channel"]]
        idle = min(now + timedelta(seconds=life.idle_s), row["absolute_expires_at"])
        if graced:
            # The previous token stays the parent: the rotation time (and so the window) is unchanged.
            await conn.execute(
                """
                UPDATE bff.sessions SET current_hash = $2, last_used_at = $3, idle_expires_at = $4,
                       generation = generation + 1
                WHERE id = $1
                """,
                row["id"],
                new_hash,
                now,
                idle,
            )
        else:
            await conn.execute(
                """
                UPDATE bff.sessions SET previous_hash = current_hash, current_hash = $2, rotated_at = $3,
                       last_used_at = $3, idle_expires_at = $4, generation = generation + 1
                WHERE id = $1
                """,
                row["id"],
                new_hash,
                now,
                idle,
            )
        await conn.execute(
            "INSERT INTO bff.refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
            new_hash,
            row["id"],
            now,
        )
        session = msgspec.structs.replace(session, idle_expires_at=idle)
        return Refreshed(outcome="graced" if graced else "rotated", session=session, refresh_token=new_token)


async def revoke(
    conn: asyncpg.Connection | asyncpg.Pool,
    session_id: str,
    *,
    now: datetime,
    reason: str,
    person_id: str | None = None,
) -> bool:
    """Revoke one session (only the person's own when `person_id` is given); False if none was live."""
    done = await conn.execute(
        """
        UPDATE bff.sessions SET revoked_at = $2, revoke_reason = $3
        WHERE id = $1 AND revoked_at IS NULL AND ($4::uuid IS NULL OR person_id = $4::uuid)
        """,
        uuid.UUID(session_id),
        now,
        reason,
        uuid.UUID(person_id) if person_id else None,
    )
    return not done.endswith(" 0")


async def revoke_all(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    now: datetime,
    reason: str,
    person_id: str | None = None,
    kiosk_id: str | None = None,
) -> list[str]:
    """Revoke every live session of a person (logout everywhere) or of a kiosk (device revoked)."""
    rows = await conn.fetch(
        """
        UPDATE bff.sessions SET revoked_at = $1, revoke_reason = $2
        WHERE revoked_at IS NULL AND (person_id = $3::uuid OR kiosk_id = $4)
        RETURNING id
        """,
        now,
        reason,
        uuid.UUID(person_id) if person_id else None,
        kiosk_id,
    )
    return [str(r["id"]) for r in rows]


async def set_level(conn: asyncpg.Connection | asyncpg.Pool, session_id: str, level: int) -> None:
    await conn.execute("UPDATE bff.sessions SET level = $2 WHERE id = $1", uuid.UUID(session_id), level)


async def get(conn: asyncpg.Connection | asyncpg.Pool, session_id: str) -> Session | None:
    row = await conn.fetchrow("SELECT * FROM bff.sessions WHERE id = $1", uuid.UUID(session_id))
    return _session(row) if row else None


async def live_for(
    conn: asyncpg.Connection | asyncpg.Pool, person_id: str, *, now: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT id, channel, level, device, kiosk_id, created_at, last_used_at, idle_expires_at, absolute_expires_at
        FROM bff.sessions
        WHERE person_id = $1 AND revoked_at IS NULL AND idle_expires_at > $2 AND absolute_expires_at > $2
        ORDER BY created_at DESC LIMIT 100
        """,
        uuid.UUID(person_id),
        now,
    )
