"""Kiosk identity: the kiosk's signed assertion of an ID card it read and a face it matched to the
card's photo. The signature (checked before this runs) proves which registered kiosk speaks; the
card's chip data and a live face match prove the person is there. A bare ID number is not enough.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import msgspec

from adapters import context
from adapters.errors import ProblemError
from auth import audit, persons, protection
from auth.issue import Tokens, logged_in, start_session
from auth.runtime import AuthRuntime

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_ID = re.compile(r"^\d{17}[\dX]$")
_DATE = re.compile(r"^\d{8}$")


def valid_id_number(value: str) -> bool:
    """GB 11643: 17 digits, then the ISO 7064 MOD 11-2 check character."""
    value = value.upper()
    if not _ID.match(value):
        return False
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return _CHECK[sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True)) % 11] == value[17]


class IdCardRead(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """What the ID-card reader got from the card's chip."""

    name: str
    id_number: str
    issuer: str
    valid_from: str  # YYYYMMDD
    valid_to: str  # YYYYMMDD or 长期
    chip_serial: str

    def __repr__(self) -> str:
        return "IdCardRead(<masked>)"


class FaceMatch(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """The kiosk's camera against the card's photo: similarity in [0, 1] and a liveness verdict."""

    score: float
    liveness: bool
    captured_at: int  # unix seconds


class KioskLogin(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    id_card: IdCardRead
    face_match: FaceMatch


def _check_card(card: IdCardRead, today: date) -> None:
    problems = []
    if not valid_id_number(card.id_number):
        problems.append("idCard.idNumber: not a valid resident ID number")
    if not 1 <= len(card.name) <= 50:
        problems.append("idCard.name: required")
    if not card.chip_serial.strip() or not card.issuer.strip():
        problems.append("idCard: the chip serial and issuer must come from the card")
    if not _DATE.match(card.valid_from) or not (_DATE.match(card.valid_to) or card.valid_to == "长期"):
        problems.append("idCard.validFrom/validTo: YYYYMMDD (validTo may be 长期)")
    else:
        problems += _check_validity(card.valid_from, card.valid_to)
    if problems:
        raise ProblemError(
            "; ".join(problems),
            status=422,
            code="validation_failed",
            detail_zh="身份证读卡信息有误：" + "；".join(p.split(":")[0] for p in problems),
        )
    if card.valid_from > f"{today:%Y%m%d}" or (card.valid_to != "长期" and card.valid_to < f"{today:%Y%m%d}"):
        raise ProblemError(
            "the ID card is not valid today",
            status=422,
            code="id_card_expired",
            detail_zh="身份证不在有效期内",
        )


def _calendar_date(value: str) -> date | None:
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


# A resident ID card is valid for 5, 10 or 20 years, or long-term (居民身份证法 art. 5): an end date
# that is not a calendar day, not after the start, or more than 20 years after it is no card's.
_MAX_VALIDITY_DAYS = 20 * 366 + 31


def _check_validity(valid_from: str, valid_to: str) -> list[str]:
    start = _calendar_date(valid_from)
    if start is None:
        return ["idCard.validFrom: not a calendar date"]
    if valid_to == "长期":
        return []
    end = _calendar_date(valid_to)
    if end is None:
        return ["idCard.validTo: not a calendar date"]
    if not 0 < (end - start).days <= _MAX_VALIDITY_DAYS:
        return ["idCard.validTo: an ID card is valid for 5, 10 or 20 years, or long-term (长期)"]
    return []


async def login(rt: AuthRuntime, kiosk_id: str, payload: KioskLogin, *, ip: str, now: datetime) -> Tokens:
    card, face = payload.id_card, payload.face_match
    _check_card(card, now.astimezone(UTC).date())
    card_ref = rt.crypto.blind_index("id_number", card.id_number).hex()[:32]
    id_key = "idnum:" + card_ref
    device_key = f"device:{kiosk_id}"
    # Failed face matches lock one ID card at one kiosk, never the kiosk: a hall's kiosk is shared,
    # and one person's failures (or an attacker's) must not stop everybody else there. The
    # operator sees kiosks under attack in `GET /api/v1/staff/kiosks/attacks` (the audit log).
    card_here = f"kioskcard:{kiosk_id}:{card_ref}"
    await protection.admit(rt, f"ip:{ip}", device_key, id_key, card_here)

    async def refuse(result: str, detail: str, zh: str, status: int, code: str) -> ProblemError:
        await protection.failed(rt, card_here, subject="-", channel="kiosk", object=f"kiosk:{kiosk_id}")
        await audit.record(
            rt.pool,
            subject="-",
            action="login",
            object=f"kiosk:{kiosk_id}",
            result=result,
            channel="kiosk",
            request_id=context.request_id.get(),
        )
        return ProblemError(detail, status=status, code=code, detail_zh=zh)

    if abs(now.timestamp() - face.captured_at) > rt.config.kiosk_skew_s:
        raise await refuse(
            "face_stale", "the face match is too old", "人脸比对结果已过时", 401, "face_match_failed"
        )
    if not face.liveness or not rt.config.kiosk_face_min_score <= face.score <= 1.0:
        raise await refuse(
            "face_mismatch",
            "the face does not match the ID card",
            "人脸与身份证不符",
            401,
            "face_match_failed",
        )
    resident = await rt.idp.lookup(id_card_number=card.id_number.upper(), name=card.name)
    if resident is None:
        raise await refuse(
            "identity_not_found",
            "no real-name identity matches this ID card",
            "没有与该身份证匹配的实名身份",
            404,
            "identity_not_found",
        )
    person = await persons.upsert_resident(rt.pool, rt.crypto, resident)
    # ID card in hand plus a live face match at a trusted device is the highest real-name level.
    tokens = await start_session(
        rt, person_id=person.id, channel="kiosk", level=3, now=now, kiosk_id=kiosk_id, device=kiosk_id
    )
    return await logged_in(rt, tokens, device_key, id_key, card_here)
