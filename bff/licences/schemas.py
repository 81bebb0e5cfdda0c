"""The e-licence wallet (电子证照), showing a licence (亮证) and its check at a counter, and "who used
my data"."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bff.platform.problems import define
from bff.platform.schema import Camel, CamelIn

define(
    __name__,
    {
        "licence_not_found": (404, "未找到该电子证照", "No such licence"),
        "licence_not_valid": (
            409,
            "该证照已过期或已注销，不能亮证",
            "The licence has expired or was revoked",
        ),
        "licence_show_invalid": (
            422,
            "亮证码无效（不是本平台签发的亮证码）",
            "Not a licence code this platform issued",
        ),
        "licence_show_expired": (410, "亮证码已过期，请持证人重新亮证", "The shown licence code has expired"),
        "licence_show_used": (
            409,
            "亮证码已被核验过，不能重复使用",
            "The shown licence code was already checked",
        ),
    },
)

TrustGrade = Literal["A", "B", "C", "D"]
LicenceStatus = Literal["valid", "expired", "revoked"]


class Issuer(Camel):
    name: str
    code: str


class LicenceOut(Camel):
    """A licence in the wallet: numbers and names masked (the full values stay at the library)."""

    id: str
    type_code: str
    type_name: str
    number: str  # masked
    holder_name: str  # masked
    holder_type: str  # 111 ID number, 001 unified social credit code
    issuer: Issuer
    issue_date: str
    valid_from: str
    valid_to: str | None  # None when long-term
    long_term: bool
    status: LicenceStatus
    trust_grade: TrustGrade
    trust_grade_text: str
    area_code: str


class LicenceDetail(LicenceOut):
    # The text a copy of the licence carries (DOMAIN.md): who issued it, for government services only,
    # until when.
    watermark_text: str
    watermark_valid_until: str


class LicenceList(Camel):
    items: list[LicenceOut]


class ShowOut(Camel):
    """亮证: the QR payload a counter scans; valid once, until `expiresAt`."""

    show_id: str
    licence_id: str
    type_name: str
    payload: str
    expires_at: str
    ttl_seconds: int


class LicenceCheckIn(CamelIn):
    payload: Annotated[str, msgspec.Meta(min_length=1, max_length=512, description="the scanned QR payload")]
    purpose: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, description="why the counter checks it")
    ]
    department_code: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$", description="the counter's unified social credit code"
        ),
    ]
    department_name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    channel: Literal["window", "kiosk"] = "window"


class LicenceCheckOut(Camel):
    result: Literal["verified"]
    check_id: str
    checked_at: str
    department_name: str
    licence: LicenceOut


class LibraryFreshness(Camel):
    status: Literal["ok", "stale", "unavailable"]
    as_of: str | None


class DataAccessItem(Camel):
    """One use of my personal data or of one of my licences."""

    id: str
    at: str
    # bff: our audit log; elicence_library: the library's usage report; counter: a check we refused
    # before it reached the library.
    source: Literal["bff", "elicence_library", "counter"]
    # agent: someone the resident gave a 代办 mandate, acting under it (`agent` names them).
    actor: Literal["self", "department", "agent"]
    channel: str
    department_name: str | None
    department_code: str | None
    action: str  # machine code: e.g. personal_data_read, licence.show, verify, copy
    what: str  # display text, in the request's language
    why: str | None
    result: str
    agent: str | None = None  # the agent's person id, when actor is agent


class DataAccessPage(Camel):
    items: list[DataAccessItem]
    next_cursor: str | None
    # How fresh the licence library's part is: its usage report is read when the first page is.
    licence_library: LibraryFreshness


class RenewalItem(Camel):
    code: str
    name: str
    region_code: str


class RenewalHall(Camel):
    id: str
    name: str
    address: str
    distance_km: float | None  # with `near`


class RenewalSlot(Camel):
    slot_id: str
    starts_at: str
    ends_at: str
    available: int


class RenewalMaterial(Camel):
    name: str
    elicence_type: str
    licence_id: str  # the wallet's licence standing in for the material


class RenewalForm(Camel):
    """What an application for the renewal starts from: the profile's contact, masked here (an
    application that leaves `contactName`/`contactPhone` out gets them from the verified profile, so
    the app never needs the plain values), and the licence in place of an upload."""

    item_code: str
    region_code: str
    contact_name: str | None  # masked
    contact_phone: str | None  # masked
    materials: list[RenewalMaterial]


class RenewalTodo(Camel):
    licence: LicenceOut
    days_left: int
    # None when the catalogue names no renewal item for this licence type in the region, or the
    # catalogue or booking system could not say in time (`status` tells which).
    item: RenewalItem | None
    form: RenewalForm | None
    hall: RenewalHall | None
    slot: RenewalSlot | None
    status: Literal["ok", "no_item", "no_slot", "unavailable"]


class RenewalList(Camel):
    items: list[RenewalTodo]
