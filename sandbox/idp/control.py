"""Control API of the identity provider: create test residents."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, post
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import Body

from sandbox.idp.ids import random_id_number, random_name, random_phone
from sandbox.idp.routes import resident_json


class NewResident(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    level: int = 2
    name: str | None = None
    id_card_number: str | None = None
    phone_number: str | None = None
    sub: str | None = None


@post("/residents", status_code=201)
async def create_resident(
    db: NamedDependency[asyncpg.Pool], data: Annotated[NewResident, Body()]
) -> dict[str, Any]:
    if not 1 <= data.level <= 3:
        raise ValidationException("level must be 1, 2 or 3")
    row = await db.fetchrow(
        """
        INSERT INTO sandbox.idp_residents (sub, name, id_card_number, phone_number, level)
        VALUES ($1, $2, $3, $4, $5) RETURNING *
        """,
        data.sub or "r-" + secrets.token_hex(8),
        data.name or random_name(),
        data.id_card_number or random_id_number(),
        data.phone_number or random_phone(),
        data.level,
    )
    assert row is not None
    return resident_json(row)


router = Router(path="/_control/idp", route_handlers=[create_resident])
