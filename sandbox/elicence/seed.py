"""Demo licences of the identity provider's demo residents (sandbox/idp/seed.py), re-anchored to the
sandbox's today on every start: 陈二's ID card expires in 58 days and 张三's driving licence in 45
(both inside the BFF's 90-day renewal window). Re-runnable; seeded rows are rewritten each time."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from typing import Any

import asyncpg

from sandbox.elicence.codes import ISSUERS, TYPES, uscc
from sandbox.elicence.routes import today

ID, HUKOU, MARRIAGE, BUSINESS = (
    "11100000000000000001",
    "11100000000000000002",
    "11100000000000000005",
    "11100000000000000010",
)
ESTATE, BIRTH, SOCIAL, DRIVING = (
    "11100000000000000020",
    "11100000000000000030",
    "11100000000000000040",
    "11100000000000000050",
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_number(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def _years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _licence(
    sub: str,
    type_code: str,
    licence_no: str,
    holder: tuple[str, str, str],
    issuer: str,
    issued: date,
    valid_to: date | None,
    *,
    grade: str = "A",
    area: str = "430104",
    data: dict[str, Any] | None = None,
    represented_by: str | None = None,
    tag: str = "",
) -> dict[str, Any]:
    name, source = TYPES[type_code]
    digest = hashlib.sha256(f"{sub}:{type_code}:{tag}".encode()).hexdigest()[:16].upper()
    return {
        "licence_id": "EL" + digest,
        "type_code": type_code,
        "type_name": name,
        "licence_no": licence_no,
        "holder_name": holder[0],
        "holder_code": holder[1],
        "holder_type": holder[2],
        "represented_by": represented_by,
        "issuer_name": ISSUERS[issuer][0],
        "issuer_code": ISSUERS[issuer][1],
        "issue_date": issued,
        "valid_from": issued,
        "valid_to": valid_to,
        "area_code": area,
        "source_id": f"HN-{source}-{digest[:8]}",
        "trust_grade": grade,
        "data": data or {},
    }


def demo_licences(residents: dict[str, tuple[str, str]], now: date) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if "demo-resident-l1" in residents:
        name, idno = residents["demo-resident-l1"]
        me = (name, idno, "111")
        out += [
            _licence(
                "l1", ID, idno, me, "ga", date(2016, 5, 12), None, area=idno[:6], data={"long_term": True}
            ),
            _licence("l1", HUKOU, "430104011203", me, "ga", date(2009, 3, 2), None, grade="B"),
            _licence("l1", SOCIAL, "A43817263", me, "rs", date(2019, 8, 20), _years(date(2019, 8, 20), 10)),
        ]
    if "demo-resident-l2" in residents:
        name, idno = residents["demo-resident-l2"]
        me = (name, idno, "111")
        id_to = now + timedelta(days=58)
        out += [
            _licence("l2", ID, idno, me, "ga", _years(id_to, -10), id_to, area=idno[:6]),
            _licence(
                "l2",
                DRIVING,
                idno,
                me,
                "jj",
                date(2021, 4, 9),
                _years(date(2021, 4, 9), 6),
                data={"vehicle_class": "C1", "file_no": "430100917733"},
            ),
            _licence(
                "l2",
                MARRIAGE,
                "J430104-2014-003518",
                me,
                "mz",
                date(2014, 10, 8),
                None,
                data={"spouse_name": "周磊"},
            ),
            _licence("l2", SOCIAL, "A43902144", me, "rs", date(2020, 1, 6), _years(date(2020, 1, 6), 10)),
            _licence(
                "l2",
                ESTATE,
                "湘（2019）长沙市不动产权第0107731号",
                me,
                "bdc",
                date(2019, 11, 27),
                None,
                area="430100",
                data={
                    "location": "长沙市岳麓区枫林三路 88 号 3 栋 1202 室",
                    "area_m2": "96.42",
                    "use": "住宅",
                },
            ),
        ]
    if "demo-resident-l3" in residents:
        name, idno = residents["demo-resident-l3"]
        me = (name, idno, "111")
        drive_to = now + timedelta(days=45)
        child = _id_number("43010420210315002")
        shop = uscc("92", "430104", "MA4R8K2Q")
        out += [
            _licence("l3", ID, idno, me, "ga", date(2018, 7, 3), _years(date(2018, 7, 3), 20), area=idno[:6]),
            _licence(
                "l3",
                DRIVING,
                idno,
                me,
                "jj",
                _years(drive_to, -10),
                drive_to,
                data={"vehicle_class": "C1", "file_no": "430100652210"},
            ),
            _licence(
                "l3",
                MARRIAGE,
                "J430104-2019-001206",
                me,
                "mz",
                date(2019, 5, 20),
                None,
                data={"spouse_name": "李娟"},
            ),
            _licence("l3", HUKOU, "430104027781", me, "ga", date(2019, 9, 16), None, grade="C"),
            _licence("l3", SOCIAL, "A43655012", me, "rs", date(2022, 3, 14), _years(date(2022, 3, 14), 10)),
            _licence(
                "l3",
                SOCIAL,
                "H10238871",
                me,
                "rs",
                date(2012, 3, 1),
                date(2022, 2, 28),
                data={"generation": "第二代"},
                tag="old",
            ),
            _licence(
                "l3",
                ESTATE,
                "湘（2021）长沙市不动产权第0213456号",
                me,
                "bdc",
                date(2021, 6, 18),
                None,
                area="430100",
                data={
                    "location": "长沙市岳麓区麓谷大道 627 号 6 栋 801 室",
                    "area_m2": "118.60",
                    "use": "住宅",
                },
            ),
            _licence(
                "l3",
                BUSINESS,
                shop,
                ("长沙市岳麓区张三便利店", shop, "001"),
                "sj",
                date(2023, 2, 10),
                None,
                data={"kind": "个体工商户", "operator": name, "scope": "预包装食品销售；日用百货零售"},
                represented_by=idno,
            ),
            _licence(
                "l3",
                BIRTH,
                "Q430376512",
                ("张小宝", child, "111"),
                "wj",
                date(2021, 3, 15),
                None,
                area="430000",
                data={"born": "2021-03-15", "mother": "李娟", "father": name},
                represented_by=idno,
            ),
        ]
    return out


async def seed_elicence(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT sub, name, id_card_number FROM sandbox.idp_residents WHERE sub LIKE 'demo-resident-%'"
    )
    residents = {r["sub"]: (r["name"], r["id_card_number"]) for r in rows}
    async with pool.acquire() as conn, conn.transaction():
        for lic in demo_licences(residents, today()):
            await conn.execute(
                """
                INSERT INTO sandbox.elicence_licences (licence_id, type_code, type_name, licence_no, holder_name,
                    holder_code, holder_type, represented_by, issuer_name, issuer_code, issue_date, valid_from,
                    valid_to, area_code, source_id, trust_grade, data, seeded)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, true)
                ON CONFLICT (licence_id) DO UPDATE SET licence_no = EXCLUDED.licence_no,
                    holder_name = EXCLUDED.holder_name, holder_code = EXCLUDED.holder_code,
                    represented_by = EXCLUDED.represented_by, issue_date = EXCLUDED.issue_date,
                    valid_from = EXCLUDED.valid_from, valid_to = EXCLUDED.valid_to, data = EXCLUDED.data,
                    trust_grade = EXCLUDED.trust_grade, revoked_at = NULL, revoke_reason = NULL
                """,
                *(lic[c] for c in _COLUMNS),
            )


_COLUMNS = (
    "licence_id",
    "type_code",
    "type_name",
    "licence_no",
    "holder_name",
    "holder_code",
    "holder_type",
    "represented_by",
    "issuer_name",
    "issuer_code",
    "issue_date",
    "valid_from",
    "valid_to",
    "area_code",
    "source_id",
    "trust_grade",
    "data",
)
