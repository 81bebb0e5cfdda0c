"""The e-licence library's wire format (电子证照库)."""

from __future__ import annotations

from typing import Any

import msgspec


class Licence(msgspec.Struct, frozen=True):
    licence_id: str
    type_code: str
    type_name: str
    licence_no: str
    holder_name: str
    holder_code: str
    holder_type: str  # 111 ID number, 001 unified social credit code
    issuer_name: str
    issuer_code: str
    issue_date: str
    valid_from: str
    valid_to: str | None  # None: long-term (长期)
    long_term: bool
    area_code: str
    source_id: str
    trust_grade: str  # A-D
    status: str  # valid | expired | revoked
    represented_by: str | None = None
    data: dict[str, Any] = {}


class LicenceList(msgspec.Struct, frozen=True):
    holder_code: str
    total: int
    licences: list[Licence]


class AuthCode(msgspec.Struct, frozen=True):
    auth_code: str
    licence_id: str
    purpose: str
    single_use: bool
    expires_at: str
    department_code: str | None = None


class Verification(msgspec.Struct, frozen=True):
    result: str
    verification_id: str  # the use's id in the library's usage report
    verified_at: str
    department_code: str
    department_name: str
    licence: Licence


class Usage(msgspec.Struct, frozen=True):
    seq: int
    usage_id: str
    licence_id: str
    type_code: str
    type_name: str
    holder_code: str
    action: str  # verify | copy
    result: str  # verified | refused | issued
    department_code: str
    department_name: str
    purpose: str
    channel: str
    used_at: str
    refusal: str | None = None


class UsagePage(msgspec.Struct, frozen=True):
    usages: list[Usage]
    next_since: int


class Refusal(msgspec.Struct, frozen=True):
    error: str = msgspec.field(name="err_code")
    message: str = msgspec.field(default="", name="err_msg")
    # A refused check is a use too: the library reports it under this id.
    usage_id: str | None = None
