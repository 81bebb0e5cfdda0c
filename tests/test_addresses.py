"""My mailing addresses: encrypted at rest, masked in answers, audited, owned, validated, capped."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from auth.crypto import CryptoError
from bff.platform.settings import Settings
from bff.wiring import pii_crypto
from tests.auth_helpers import login_resident
from tests.delivery_helpers import add_address, address_body, delivery_urls, ensure_mirror, fresh_phone
from tests.test_journey_helpers import auth, key


@pytest.fixture
async def client(make_client, services, sandbox_url) -> httpx.AsyncClient:
    await ensure_mirror(services, sandbox_url)
    return await make_client(**delivery_urls(sandbox_url), address_max_per_person=3)


async def test_encrypted_at_rest_masked_in_answers_and_every_read_audited(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    phone = fresh_phone()
    idem = key()
    body = address_body(phone)
    created = await client.post("/api/v1/me/addresses", json=body, headers=auth(who, idem))
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    out = created.json()
    assert out["name"] == "王**" and out["phone"] == phone[:3] + "****" + phone[-4:]
    assert (
        out["address"] == "岳麓区麓山南" + "****" and out["regionCode"] == "430104" and out["label"] == "家"
    )
    # The same key replays the first answer byte for byte, and adds nothing.
    again = await client.post("/api/v1/me/addresses", json=body, headers=auth(who, idem))
    assert again.content == created.content and again.headers["idempotent-replayed"] == "true"

    row = await db.fetchrow("SELECT * FROM bff.addresses WHERE id = $1::uuid", out["id"])
    raw = b"".join(bytes(row[c]) for c in ("name_enc", "phone_enc", "address_enc"))
    for plain in (body["name"], phone, body["address"], "麓山南路"):
        assert plain.encode() not in raw
    crypto = pii_crypto(Settings())
    assert crypto.decrypt("phone", bytes(row["phone_enc"])) == phone
    assert crypto.decrypt("address", bytes(row["address_enc"])) == body["address"]
    with pytest.raises(CryptoError):  # a value moved into another column does not decrypt
        crypto.decrypt("name", bytes(row["phone_enc"]))
    assert await db.fetchval("SELECT count(*) FROM bff.addresses WHERE person_id = $1", who["person_id"]) == 1

    listed = await client.get("/api/v1/me/addresses", headers=auth(who))
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    assert [a["id"] for a in listed.json()["items"]] == [out["id"]]
    assert phone not in listed.text and "麓山南路" not in listed.text
    actions = [
        r["action"]
        for r in await db.fetch(
            "SELECT action FROM bff.audit_log WHERE subject = $1 AND action LIKE 'address.%' ORDER BY seq",
            who["person_id"],
        )
    ]
    assert actions == ["address.create", "address.read"]


async def test_replace_and_delete_are_idempotent_and_another_residents_address_is_404(
    client, sandbox, db
) -> None:
    owner = await login_resident(client, sandbox, level=3)
    other = await login_resident(client, sandbox, level=3)
    address = await add_address(client, owner)
    path = f"/api/v1/me/addresses/{address['id']}"
    before = await db.fetchrow("SELECT * FROM bff.addresses WHERE id = $1::uuid", address["id"])

    stranger = [
        await client.put(path, json=address_body(), headers=auth(other)),
        await client.delete(path, headers=auth(other)),
    ]
    assert [r.status_code for r in stranger] == [404, 404]
    assert {r.json()["code"] for r in stranger} == {"address_not_found"}
    unknown = await client.delete(
        "/api/v1/me/addresses/00000000-0000-0000-0000-000000000000", headers=auth(other)
    )
    assert unknown.status_code == 404 and unknown.json() == {**unknown.json(), "code": "address_not_found"}
    assert dict(await db.fetchrow("SELECT * FROM bff.addresses WHERE id = $1::uuid", address["id"])) == dict(
        before
    )
    denied = await db.fetchval(
        "SELECT count(*) FROM bff.audit_log WHERE subject = $1 AND result = 'denied_not_owner' AND object = $2",
        other["person_id"],
        f"address:{address['id']}",
    )
    assert denied == 2
    assert (await client.get("/api/v1/me/addresses", headers=auth(other))).json()["items"] == []

    new_phone = fresh_phone()
    replaced = [
        await client.put(path, json=address_body(new_phone, label="单位"), headers=auth(owner, key()))
        for _ in range(2)
    ]
    assert [r.status_code for r in replaced] == [200, 200]
    assert (
        replaced[0].json()["phone"] == replaced[1].json()["phone"] == new_phone[:3] + "****" + new_phone[-4:]
    )
    assert replaced[1].json()["label"] == "单位"
    assert [(await client.delete(path, headers=auth(owner))).status_code for _ in range(2)] == [204, 204]
    assert (await client.get("/api/v1/me/addresses", headers=auth(owner))).json()["items"] == []
    assert (await client.put(path, json=address_body(), headers=auth(owner))).status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"phone": "12345"}, 400, "validation_failed", "phone"),
        ({"phone": "23800138000"}, 400, "validation_failed", "phone"),
        ({"regionCode": "4301"}, 400, "validation_failed", "regionCode"),
        ({"regionCode": "999999"}, 422, "region_unknown", "regionCode"),
        ({"regionCode": "110101"}, 422, "region_unknown", "regionCode"),
        ({"name": ""}, 400, "validation_failed", "name"),
        ({"idNumber": "430104199001011234"}, 400, "validation_failed", "idNumber"),
    ],
)
async def test_bad_region_or_phone_names_the_field_and_stores_nothing(
    client, sandbox, db, change, status, code, field
) -> None:
    who = await login_resident(client, sandbox, level=3)
    response = await client.post(
        "/api/v1/me/addresses", json=address_body(**change), headers=auth(who, key())
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["code"] == code
    assert field in problem["detail"], problem  # the field is named (unknown ones too)
    if field != "idNumber":
        # RFC 9457: extension members (here `field`) stand at the top level of the problem.
        named = {e["field"] for e in problem.get("errors", [])} | {problem.get("field")}
        assert field in named, problem
    assert await db.fetchval("SELECT count(*) FROM bff.addresses WHERE person_id = $1", who["person_id"]) == 0


async def test_concurrent_adds_never_pass_the_cap(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/me/addresses", json=address_body(), headers=auth(who, key()))
            for _ in range(8)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 5, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"address_limit_reached"}
    assert await db.fetchval("SELECT count(*) FROM bff.addresses WHERE person_id = $1", who["person_id"]) == 3
