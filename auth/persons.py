"""Persons: our own stable id for a resident, whatever channel they come through.

Name, ID number and phone are stored encrypted; ID number and phone also as blind indexes, which
is how a person is found again without ever querying by plaintext.
"""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from adapters.errors import ProblemError
from adapters.idp.schemas import Resident
from auth.crypto import PiiCrypto


class Person(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    level: int
    name: str
    id_number: str | None
    phone: str | None
    ui_mode: str = "standard"

    def __repr__(self) -> str:
        return f"Person(id={self.id!r}, level={self.level})"


async def upsert_resident(
    conn: asyncpg.Connection | asyncpg.Pool, crypto: PiiCrypto, resident: Resident
) -> Person:
    """Create or refresh the person the identity provider vouches for (its data wins)."""
    try:
        row = await conn.fetchrow(
            """
            INSERT INTO bff.persons (id, idp_subject, name_enc, id_number_enc, id_number_bidx, phone_enc,
                                     phone_bidx, level)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (idp_subject) DO UPDATE SET
                name_enc = excluded.name_enc, id_number_enc = excluded.id_number_enc,
                id_number_bidx = excluded.id_number_bidx, phone_enc = excluded.phone_enc,
                phone_bidx = excluded.phone_bidx, level = excluded.level, updated_at = now()
            RETURNING id, level
            """,
            uuid.uuid4(),
            resident.sub,
            crypto.encrypt("name", resident.name),
            crypto.encrypt("id_number", resident.id_card_number),
            crypto.blind_index("id_number", resident.id_card_number),
            crypto.encrypt("phone", resident.phone_number),
            crypto.blind_index("phone", resident.phone_number),
            resident.level,
        )
    except asyncpg.UniqueViolationError:
        raise ProblemError(
            "this identity is already held by another account",
            status=409,
            code="identity_conflict",
            detail_zh="该身份已被另一账号使用",
        ) from None
    assert row is not None
    return Person(
        id=str(row["id"]),
        level=row["level"],
        name=resident.name,
        id_number=resident.id_card_number,
        phone=resident.phone_number,
    )


async def load(conn: asyncpg.Connection | asyncpg.Pool, crypto: PiiCrypto, person_id: str) -> Person | None:
    row = await conn.fetchrow("SELECT * FROM bff.persons WHERE id = $1", uuid.UUID(person_id))
    if row is None:
        return None
    return Person(
        id=str(row["id"]),
        level=row["level"],
        name=crypto.decrypt("name", row["name_enc"]),
        id_number=crypto.decrypt("id_number", row["id_number_enc"]) if row["id_number_enc"] else None,
        phone=crypto.decrypt("phone", row["phone_enc"]) if row["phone_enc"] else None,
        ui_mode=row["ui_mode"],
    )


async def find_by_id_number(
    conn: asyncpg.Connection | asyncpg.Pool, crypto: PiiCrypto, id_number: str
) -> str | None:
    value = await conn.fetchval(
        "SELECT id FROM bff.persons WHERE id_number_bidx = $1", crypto.blind_index("id_number", id_number)
    )
    return str(value) if value else None


async def bound_person(conn: asyncpg.Connection | asyncpg.Pool, openid: str) -> tuple[str, int] | None:
    row = await conn.fetchrow(
        """
        SELECT p.id, p.level FROM bff.wechat_bindings b JOIN bff.persons p ON p.id = b.person_id
        WHERE b.openid = $1
        """,
        openid,
    )
    return (str(row["id"]), row["level"]) if row else None


async def bind_wechat(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    openid: str,
    unionid: str | None,
    person_id: str,
    session_key_enc: bytes,
) -> None:
    await conn.execute(
        """
        INSERT INTO bff.wechat_bindings (openid, unionid, person_id, session_key_enc) VALUES ($1, $2, $3, $4)
        ON CONFLICT (openid) DO UPDATE SET unionid = excluded.unionid, person_id = excluded.person_id,
            session_key_enc = excluded.session_key_enc, last_login_at = now()
        """,
        openid,
        unionid,
        uuid.UUID(person_id),
        session_key_enc,
    )


async def touch_wechat(conn: asyncpg.Connection | asyncpg.Pool, openid: str, session_key_enc: bytes) -> None:
    await conn.execute(
        "UPDATE bff.wechat_bindings SET session_key_enc = $2, last_login_at = now() WHERE openid = $1",
        openid,
        session_key_enc,
    )
