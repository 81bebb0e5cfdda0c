"""Control API of the identity provider: create test residents."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Router, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, ValidationException
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
    for _ in range(5):
        try:
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
        except asyncpg.UniqueViolationError as exc:
            # A drawn ID number already taken (about 140 million to draw from, and a full suite
            # makes thousands: a few per cent of runs meet one): draw again. One asked for is a 409.
            drawn = {"idp_residents_id_card_number_key": data.id_card_number, "idp_residents_pkey": data.sub}
            if exc.constraint_name not in drawn or drawn[exc.constraint_name] is not None:
                raise ClientException("that resident exists", status_code=409) from None
            continue
        assert row is not None
        return resident_json(row)
    raise ClientException("no free ID number drawn", status_code=409)


router = Router(path="/_control/idp", route_handlers=[create_resident])
