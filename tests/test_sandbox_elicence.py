"""The e-licence library sandbox over real HTTP: signed clients, the demo residents' wallets, usage
authorisation codes and the counter-side check (used, expired, forged, revoked, another department),
watermarked copies, and a usage feed that records every use and cannot skip a late commit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import secrets
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx

BFF = ("sanxiang-bff", "sandbox-elicence-secret")
COUNTER = ("counter-430104", "sandbox-elicence-counter-secret")
DEPT = {"department_code": "11430104MB1D0789XK", "department_name": "长沙市岳麓区政务服务中心"}
OTHER_DEPT = {"department_code": "11430100007181211T", "department_name": "长沙市公安局交通警察支队"}
ID_CARD, DRIVING, BUSINESS, BIRTH = (
    "11100000000000000001",
    "11100000000000000050",
    "11100000000000000010",
    "11100000000000000030",
)
CHINA = timezone(timedelta(hours=8))
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number() -> str:
    first17 = f"430104{random.randrange(1960, 2000)}0{random.randrange(1, 10)}1{random.randrange(0, 10)}{random.randrange(0, 1000):03d}"
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def signed(
    method: str, path: str, body: Any = None, client: tuple[str, str] = BFF, skew: int = 0
) -> dict[str, Any]:
    raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    timestamp = str(int(time.time()) + skew)
    mac = hmac.new(client[1].encode(), f"{timestamp}.{method}.{path}.".encode() + raw, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "X-Elicence-Client-Id": client[0],
        "X-Elicence-Timestamp": timestamp,
        "X-Elicence-Signature": "sha256=" + mac.hexdigest(),
    }
    return {"content": raw, "headers": headers}


async def call(
    sandbox: httpx.AsyncClient, method: str, path: str, body: Any = None, client: tuple[str, str] = BFF
) -> httpx.Response:
    return await sandbox.request(method, path, **signed(method, path, body, client))


async def resident(db: asyncpg.Connection, sub: str) -> tuple[str, str]:
    row = await db.fetchrow("SELECT name, id_card_number FROM sandbox.idp_residents WHERE sub = $1", sub)
    assert row is not None
    return row["name"], row["id_card_number"]


async def licences(sandbox: httpx.AsyncClient, holder: str, **extra: Any) -> list[dict[str, Any]]:
    found = await call(sandbox, "POST", "/elicence/v1/licences/search", {"holder_code": holder, **extra})
    assert found.status_code == 200, found.text
    return list(found.json()["licences"])


async def new_licence(sandbox: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    holder = id_number()
    body = {"type_code": DRIVING, "holder_code": holder, "holder_name": "测试员", "issuer": "jj", **extra}
    made = await sandbox.post("/_control/elicence/licences", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def grant(sandbox: httpx.AsyncClient, licence: dict[str, Any], **extra: Any) -> httpx.Response:
    body = {
        "request_id": "RQ" + secrets.token_hex(8),
        "licence_id": licence["licence_id"],
        "holder_code": licence["holder_code"],
        "purpose": "办理机动车驾驶证换证",
        **extra,
    }
    return await call(sandbox, "POST", "/elicence/v1/auth-codes", body)


async def check(sandbox: httpx.AsyncClient, client: tuple[str, str] = BFF, **body: Any) -> httpx.Response:
    payload = {"request_id": "VR" + secrets.token_hex(8), "purpose": "窗口核验", **body}
    if client is BFF:
        payload = {**DEPT, **payload}
    return await call(sandbox, "POST", "/elicence/v1/verifications", payload, client)


async def usages(sandbox: httpx.AsyncClient, holder: str, since: int = 0) -> dict[str, Any]:
    page = await call(sandbox, "POST", "/elicence/v1/usages/search", {"holder_code": holder, "since": since})
    assert page.status_code == 200, page.text
    return dict(page.json())


async def test_every_route_refuses_an_unsigned_or_replayed_request(sandbox: httpx.AsyncClient) -> None:
    path = "/elicence/v1/licences/search"
    body = {"holder_code": id_number()}
    assert (await call(sandbox, "POST", path, body)).status_code == 200
    unsigned = await sandbox.post(path, json=body)
    assert unsigned.status_code == 401 and unsigned.json()["err_code"] == "unauthenticated"
    stale = await sandbox.post(path, **signed("POST", path, body, skew=-400))
    assert stale.status_code == 401 and "5 minutes" in stale.json()["err_msg"]
    wrong_key = await sandbox.post(path, **signed("POST", path, body, client=(BFF[0], "guess")))
    assert wrong_key.json()["err_code"] == "unauthenticated"
    # A signature made for one path does not open another.
    replay = await sandbox.get(
        "/elicence/v1/licences/ELX", headers=signed("GET", "/elicence/v1/licences/ELY")["headers"]
    )
    assert replay.status_code == 401
    bad = await call(sandbox, "POST", path, {"holder_code": "430104199001011234"})
    assert bad.status_code == 400 and bad.json()["err_code"] == "bad_holder_code"
    unknown_field = await call(sandbox, "POST", path, {**body, "holder": "x"})
    assert unknown_field.status_code == 400 and unknown_field.json()["err_code"] == "bad_request"
    missing = await call(sandbox, "GET", "/elicence/v1/licences/EL0000")
    assert missing.status_code == 404 and missing.json()["err_code"] == "licence_not_found"


async def test_demo_residents_hold_a_realistic_wallet(
    sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    today = datetime.now(CHINA).date()
    name, zhang = await resident(db, "demo-resident-l3")
    own = await licences(sandbox, zhang)
    assert {lic["holder_code"] for lic in own} == {zhang} and {lic["holder_name"] for lic in own} == {name}
    assert {lic["type_name"] for lic in own} >= {
        "居民身份证",
        "机动车驾驶证",
        "结婚证",
        "户口簿",
        "社会保障卡",
        "不动产权证书",
    }
    driving = next(lic for lic in own if lic["type_code"] == DRIVING)
    assert driving["status"] == "valid" and driving["licence_no"] == zhang
    assert 0 < (date.fromisoformat(driving["valid_to"]) - today).days <= 60
    assert {lic["status"] for lic in own} == {"valid", "expired"}  # the old social security card
    assert {lic["trust_grade"] for lic in own} >= {"A", "C"}
    assert all(len(lic["type_code"]) == 20 and len(lic["issuer_code"]) == 18 for lic in own)
    estate = next(lic for lic in own if lic["type_name"] == "不动产权证书")
    assert estate["long_term"] and estate["valid_to"] is None
    valid_only = await licences(sandbox, zhang, include_invalid=False)
    assert len(valid_only) == len(own) - 1

    family = await licences(sandbox, zhang, include_represented=True)
    shop = next(lic for lic in family if lic["type_code"] == BUSINESS)
    assert (
        shop["holder_type"] == "001"
        and shop["represented_by"] == zhang
        and shop["licence_no"] == shop["holder_code"]
    )
    child = next(lic for lic in family if lic["type_code"] == BIRTH)
    assert child["holder_code"] != zhang and child["represented_by"] == zhang
    by_code = await licences(sandbox, shop["holder_code"], holder_type="001")
    assert [lic["licence_id"] for lic in by_code] == [shop["licence_id"]]

    _, chen = await resident(db, "demo-resident-l2")
    card = next(lic for lic in await licences(sandbox, chen) if lic["type_code"] == ID_CARD)
    assert 0 < (date.fromisoformat(card["valid_to"]) - today).days <= 60
    one = await call(sandbox, "GET", f"/elicence/v1/licences/{card['licence_id']}")
    assert one.status_code == 200 and one.json() == card


async def test_auth_code_check_used_expired_forged_and_every_use_in_the_feed(
    sandbox: httpx.AsyncClient,
) -> None:
    licence = await new_licence(sandbox)
    holder = licence["holder_code"]
    granted = await grant(sandbox, licence)
    assert granted.status_code == 201, granted.text
    code = granted.json()["auth_code"]
    assert len(code) == 18 and granted.json()["single_use"]

    first = {"request_id": "VR" + secrets.token_hex(8), "auth_code": code}
    ok = await check(sandbox, **first)
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"] == "verified" and ok.json()["licence"]["licence_no"] == licence["licence_no"]
    assert ok.json()["department_name"] == DEPT["department_name"]
    retried = await check(sandbox, **first)  # a network retry answers the same, it is not "used"
    assert retried.json() == ok.json()
    used = await check(sandbox, auth_code=code)
    assert used.status_code == 409 and used.json()["err_code"] == "auth_code_used"
    forged = await check(sandbox, auth_code=str(int(code) ^ 1).zfill(18))
    assert forged.status_code == 404 and forged.json()["err_code"] == "auth_code_unknown"

    late = (await grant(sandbox, licence, single_use=False)).json()["auth_code"]
    assert (await check(sandbox, auth_code=late)).status_code == 200
    assert (await check(sandbox, auth_code=late)).status_code == 200  # reusable until it expires
    assert (await sandbox.post(f"/_control/elicence/auth-codes/{late}/expire")).status_code == 201
    expired = await check(sandbox, auth_code=late)
    assert expired.status_code == 409 and expired.json()["err_code"] == "auth_code_expired"

    bound = (await grant(sandbox, licence, department_code=OTHER_DEPT["department_code"])).json()["auth_code"]
    elsewhere = await check(sandbox, client=COUNTER, auth_code=bound)  # the counter is DEPT, not OTHER_DEPT
    assert elsewhere.status_code == 403 and elsewhere.json()["err_code"] == "department_mismatch"
    there = await check(sandbox, auth_code=bound, **OTHER_DEPT)
    assert there.status_code == 200 and there.json()["department_code"] == OTHER_DEPT["department_code"]

    by_number = await check(sandbox, client=COUNTER, licence_no=licence["licence_no"], holder_code=holder)
    assert by_number.status_code == 200 and by_number.json()["department_name"] == DEPT["department_name"]
    wrong_holder = await check(sandbox, licence_no=licence["licence_no"], holder_code=id_number())
    assert wrong_holder.status_code == 404
    assert (await check(sandbox, auth_code=code, licence_no="x", holder_code=holder)).status_code == 400
    assert (await grant(sandbox, licence, ttl_s=5)).status_code == 400
    no_dept = await call(
        sandbox, "POST", "/elicence/v1/verifications", {"request_id": "x1", "purpose": "p", "auth_code": code}
    )
    assert no_dept.status_code == 400  # a platform client must name the department it acts for

    await sandbox.post(f"/_control/elicence/licences/{licence['licence_id']}/expire")
    lapsed = await check(sandbox, licence_no=licence["licence_no"], holder_code=holder)
    assert lapsed.status_code == 409 and lapsed.json()["err_code"] == "licence_expired"
    refused_grant = await grant(sandbox, licence)
    assert refused_grant.status_code == 409 and refused_grant.json()["err_code"] == "licence_expired"

    feed = await usages(sandbox, holder)
    results = [(u["action"], u["result"], u["refusal"]) for u in feed["usages"]]
    assert results == [
        ("verify", "verified", None),
        ("verify", "refused", "auth_code_used"),
        ("verify", "verified", None),
        ("verify", "verified", None),
        ("verify", "refused", "auth_code_expired"),
        ("verify", "refused", "department_mismatch"),
        ("verify", "verified", None),
        ("verify", "verified", None),
        ("verify", "refused", "licence_expired"),
    ]
    first_use = feed["usages"][0]
    assert first_use["usage_id"] == ok.json()["verification_id"]
    assert first_use["department_code"] == DEPT["department_code"] and first_use["purpose"] == "窗口核验"
    assert (
        first_use["channel"] == "window" and first_use["type_name"] == "机动车驾驶证" and first_use["used_at"]
    )
    seqs = [u["seq"] for u in feed["usages"]]
    assert seqs == sorted(seqs) and feed["next_since"] == seqs[-1]
    assert (await usages(sandbox, holder, since=seqs[3]))["usages"] == feed["usages"][4:]
    everyone = await call(sandbox, "GET", f"/elicence/v1/usages?since={seqs[0] - 1}&limit=500")
    assert [u["usage_id"] for u in everyone.json()["usages"] if u["holder_code"] == holder] == [
        u["usage_id"] for u in feed["usages"]
    ]
    counter = await call(sandbox, "GET", "/elicence/v1/usages?since=0", client=COUNTER)
    assert counter.status_code == 403 and counter.json()["err_code"] == "forbidden"


async def test_revoked_licence_and_request_id_reuse(sandbox: httpx.AsyncClient) -> None:
    licence = await new_licence(sandbox, type_code=ID_CARD, issuer="ga")
    code = (await grant(sandbox, licence, single_use=False)).json()["auth_code"]
    revoked = await sandbox.post(f"/_control/elicence/licences/{licence['licence_id']}/revoke", json={})
    assert revoked.json()["status"] == "revoked"
    refused = await check(sandbox, auth_code=code)
    assert refused.status_code == 409 and refused.json()["err_code"] == "licence_revoked"
    body = {"request_id": "VRSAME" + secrets.token_hex(4), "auth_code": code}
    await check(sandbox, **body)
    reused = await check(sandbox, **{**body, "purpose": "另一个用途"})
    assert reused.status_code == 409 and reused.json()["err_code"] == "request_id_reused"


async def test_watermarked_copy_is_a_recorded_use(sandbox: httpx.AsyncClient) -> None:
    licence = await new_licence(sandbox, valid_to=(date.today() + timedelta(days=400)).isoformat())
    path = f"/elicence/v1/licences/{licence['licence_id']}/copies"
    body = {"request_id": "CP" + secrets.token_hex(6), "purpose": "申领居住证", "channel": "app", **DEPT}
    made = await call(sandbox, "POST", path, body)
    assert made.status_code == 201, made.text
    mark = made.json()["watermark_text"]
    until = date.fromisoformat(made.json()["valid_until"])
    assert mark == (
        f"此件由长沙市公安局交通警察支队提供，仅供办理政务服务事项时使用，有效期至{until.year}年{until.month}月{until.day}日"
    )
    svg = base64.b64decode(made.json()["content_base64"]).decode()
    assert svg.startswith("<svg") and mark in svg and licence["licence_no"] in svg
    use = (await usages(sandbox, licence["holder_code"]))["usages"]
    assert [(u["action"], u["channel"], u["purpose"]) for u in use] == [("copy", "app", "申领居住证")]
    missing = await call(sandbox, "POST", "/elicence/v1/licences/ELNONE/copies", body | {"request_id": "z"})
    assert missing.status_code == 404


async def test_usage_feed_cannot_skip_a_late_commit(sandbox: httpx.AsyncClient) -> None:
    licence = await new_licence(sandbox)
    holder, number = licence["holder_code"], licence["licence_no"]
    cursor = (await usages(sandbox, holder))["next_since"]
    # The first check takes its seq and stays uncommitted for a while; the second starts after it.
    slow = asyncio.create_task(check(sandbox, licence_no=number, holder_code=holder, hold_ms=600))
    await asyncio.sleep(0.15)
    fast = asyncio.create_task(check(sandbox, licence_no=number, holder_code=holder, purpose="第二次"))
    seen: list[str] = []
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        page = await usages(sandbox, holder, since=cursor)
        seen += [u["purpose"] for u in page["usages"]]
        cursor = page["next_since"]
        await asyncio.sleep(0.02)
    assert (await slow).status_code == 200 and (await fast).status_code == 200
    assert seen == ["窗口核验", "第二次"]
