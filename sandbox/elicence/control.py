"""The e-licence library's control API (tests and demos): add a licence, expire or revoke one,
let an authorisation code run out."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Response, Router, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath

from sandbox.elicence.codes import ISSUERS, TYPES, valid_holder
from sandbox.elicence.routes import licence_json, refusal, today


class LicenceIn(msgspec.Struct, forbid_unknown_fields=True):
    type_code: str
    holder_code: str
    holder_name: str
    holder_type: Literal["111", "001"] = "111"
    licence_no: str | None = None  # the holder code when absent (ID cards, driving licences)
    issue_date: date | None = None
    valid_to: date | None = None  # long-term when absent
    trust_grade: Literal["A", "B", "C", "D"] = "A"
    issuer: str = "ga"
    area_code: str = "430104"
    represented_by: str | None = None
    data: dict[str, Any] = {}


class RevokeIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str = "证照注销"


@post("/licences")
async def add_licence(db: NamedDependency[asyncpg.Pool], data: Annotated[LicenceIn, Body()]) -> Response[Any]:
    if data.type_code not in TYPES or data.issuer not in ISSUERS:
        return refusal("bad_request", f"type_code one of {sorted(TYPES)}, issuer one of {sorted(ISSUERS)}")
    if not valid_holder(data.holder_type, data.holder_code):
        return refusal("bad_holder_code", "not a well-formed holder code")
    issued = data.issue_date or today() - timedelta(days=365)
    licence_id = "EL" + uuid.uuid4().hex[:16].upper()
    row = await db.fetchrow(
        """
        INSERT INTO sandbox.elicence_licences (licence_id, type_code, type_name, licence_no, holder_name,
            holder_code, holder_type, represented_by, issuer_name, issuer_code, issue_date, valid_from,
            valid_to, area_code, source_id, trust_grade, data)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16) RETURNING *
        """,
        licence_id,
        data.type_code,
        TYPES[data.type_code][0],
        data.licence_no or data.holder_code,
        data.holder_name,
        data.holder_code,
        data.holder_type,
        data.represented_by,
        *ISSUERS[data.issuer],
        issued,
        data.valid_to,
        data.area_code,
        f"HN-{TYPES[data.type_code][1]}-{licence_id[2:10]}",
        data.trust_grade,
        data.data,
    )
    assert row is not None
    return Response(licence_json(row), status_code=201)


@post("/licences/{licence_id:str}/expire")
async def expire_licence(db: NamedDependency[asyncpg.Pool], licence_id: FromPath[str]) -> Response[Any]:
    """The licence's validity ended yesterday (China date)."""
    row = await db.fetchrow(
        "UPDATE sandbox.elicence_licences SET valid_to = $2 WHERE licence_id = $1 RETURNING *",
        licence_id,
        today() - timedelta(days=1),
    )
    if row is None:
        return refusal("licence_not_found", licence_id)
    return Response(licence_json(row), status_code=201)


@post("/licences/{licence_id:str}/revoke")
async def revoke_licence(
    db: NamedDependency[asyncpg.Pool], licence_id: FromPath[str], data: Annotated[RevokeIn, Body()]
) -> Response[Any]:
    row = await db.fetchrow(
        """
        UPDATE sandbox.elicence_licences SET revoked_at = now(), revoke_reason = $2
        WHERE licence_id = $1 RETURNING *
        """,
        licence_id,
        data.reason,
    )
    if row is None:
        return refusal("licence_not_found", licence_id)
    return Response(licence_json(row), status_code=201)


@post("/auth-codes/{auth_code:str}/expire")
async def expire_code(db: NamedDependency[asyncpg.Pool], auth_code: FromPath[str]) -> Response[Any]:
    done = await db.fetchval(
        """
        UPDATE sandbox.elicence_auth_codes SET expires_at = now() - interval '1 second'
        WHERE auth_code = $1 RETURNING auth_code
        """,
        auth_code,
    )
    if done is None:
        return refusal("auth_code_unknown", auth_code)
    return Response({"auth_code": done, "expired": True}, status_code=201)


router = Router(
    path="/_control/elicence", route_handlers=[add_licence, expire_licence, revoke_licence, expire_code]
)
