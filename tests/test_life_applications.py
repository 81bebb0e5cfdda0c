"""一件事一次办 over HTTP against the sandbox case system: the questionnaire decides the members, each
material is sent once per member that needs it, a replayed submission creates nothing more, one
member's refusal leaves the others standing and is retried, and the bundle's view follows its
members through 补正 and conclusion."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_catalogue_sync import run_sync
from tests.test_journey_helpers import (
    advance,
    apply,
    auth,
    bookable_item,
    deliver,
    key,
    upload,
    upstream_urls,
)

REGION = "430104"  # 岳麓区: every item of the newborn bundle is applied for online here
EVENT = "newborn"
YES_HOUSEHOLD = {"registerHousehold": True, "reissueBirthCertificate": False, "vaccinationCardLost": False}


@pytest.fixture
async def client(services, sandbox_url, make_client) -> httpx.AsyncClient:
    await run_sync(services, sandbox_url)
    made = await make_client(**upstream_urls(sandbox_url))
    await made.app.state.root.catalogue_mirror.refresh(force=True)
    return made


def _query(answers: dict[str, bool]) -> str:
    return ",".join(f"{k}={'yes' if v else 'no'}" for k, v in answers.items())


async def codes_by_name(client: httpx.AsyncClient) -> dict[str, str]:
    steps = (await client.get(f"/api/v1/life-events/{EVENT}")).json()["steps"]
    return {s["name"]: s["code"] for s in steps}


async def bundle_body(
    client: httpx.AsyncClient, who: dict[str, Any], answers: dict[str, bool] = YES_HOUSEHOLD
) -> dict[str, Any]:
    """Every required material of the merged form once: e-licences where they stand in, else one upload."""
    form = await client.get(
        f"/api/v1/life-events/{EVENT}/form", params={"region": REGION, "answers": _query(answers)}
    )
    assert form.status_code == 200, form.text
    materials: list[dict[str, Any]] = []
    for material in form.json()["materials"]:
        if not material["required"]:
            continue
        if material["elicenceType"]:
            materials.append(
                {
                    "name": material["name"],
                    "elicence": {"type": material["elicenceType"], "number": "EL" + key()[:10]},
                }
            )
        else:
            materials.append({"name": material["name"], "uploadId": await upload(client, who)})
    return {
        "answers": dict(answers),  # a copy: a test may change its body
        "regionCode": REGION,
        "form": {"contactName": "张三", "contactPhone": "13800138000"},
        "materials": materials,
    }


async def counts(db, person_id: str) -> tuple[int, int, int]:
    return (
        int(await db.fetchval("SELECT count(*) FROM bff.life_applications WHERE person_id = $1", person_id)),
        int(
            await db.fetchval(
                """SELECT count(*) FROM bff.life_application_members m JOIN bff.life_applications a
                   ON a.id = m.application_id WHERE a.person_id = $1""",
                person_id,
            )
        ),
        int(await db.fetchval("SELECT count(*) FROM bff.cases WHERE person_id = $1", person_id)),
    )


async def test_the_form_asks_each_question_and_each_material_once(client) -> None:
    codes = await codes_by_name(client)
    blank = await client.get(f"/api/v1/life-events/{EVENT}/form", params={"region": REGION})
    assert blank.status_code == 200, blank.text
    body = blank.json()
    assert [q["id"] for q in body["questions"]] == list(YES_HOUSEHOLD)
    assert body["unanswered"] == list(YES_HOUSEHOLD)
    steps = {s["name"]: s for s in body["steps"]}
    assert steps["出生登记"]["applies"] is None and steps["出生登记"]["condition"] == "registerHousehold"
    assert steps["城乡居民基本医疗保险参保登记"]["applies"] is True
    # Unanswered, birth registration's own materials are not asked for yet.
    assert "出生医学证明" not in {m["name"] for m in body["materials"]}

    answered = (
        await client.get(
            f"/api/v1/life-events/{EVENT}/form", params={"region": REGION, "answers": _query(YES_HOUSEHOLD)}
        )
    ).json()
    assert answered["unanswered"] == []
    materials = {m["name"]: m for m in answered["materials"]}
    assert len(materials) == len(answered["materials"])  # one entry per name
    members = {codes["出生登记"], codes["城乡居民基本医疗保险参保登记"], codes["社会保障卡申领"]}
    assert set(materials["居民身份证"]["neededBy"]) == members
    assert materials["居民身份证"]["elicenceType"] == "11100000000000000001"
    assert materials["出生医学证明"]["neededBy"] == [codes["出生登记"]]
    assert materials["申请表"]["elicenceType"] is None and materials["申请表"]["required"] is True

    missing = await client.get("/api/v1/life-events/nope/form", params={"region": REGION})
    assert missing.status_code == 404 and missing.json()["code"] == "life_event_not_found"
    bad = await client.get(
        f"/api/v1/life-events/{EVENT}/form", params={"region": REGION, "answers": "x=maybe"}
    )
    assert bad.status_code == 422 and bad.json()["code"] == "answers_invalid"
    unknown = await client.get(
        f"/api/v1/life-events/{EVENT}/form", params={"region": REGION, "answers": "pets=yes"}
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "answers_invalid"


async def test_one_submission_makes_one_case_per_applicable_item_and_a_replay_nothing_more(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    codes = await codes_by_name(client)
    body = await bundle_body(client, who)
    idem = key()
    # The same key sent three times at once: one submission runs, the others wait or replay.
    first = await asyncio.gather(
        *(
            client.post(f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who, idem))
            for _ in range(3)
        )
    )
    assert sorted(r.status_code for r in first)[0] == 201, [r.text for r in first]
    assert {r.status_code for r in first} <= {201, 409}
    made = next(r for r in first if r.status_code == 201).json()
    expected = [codes["出生登记"], codes["城乡居民基本医疗保险参保登记"], codes["社会保障卡申领"]]
    # The questionnaire: no reissue of the birth certificate and no lost vaccination card.
    assert [m["itemCode"] for m in made["members"]] == expected
    assert all(m["state"] == "submitted" and m["case"]["projectNo"] for m in made["members"]), made
    assert made["state"] == "submitted" and made["nextAction"]["kind"] == "wait"
    assert await counts(db, who["person_id"]) == (1, 3, 3)

    # What the case system received: each member only the materials its guide asks for, each once.
    sent = {
        r["catalog_code"]: json.loads(r["materials"]) if isinstance(r["materials"], str) else r["materials"]
        for r in await db.fetch(
            "SELECT catalog_code, materials FROM sandbox.case_applications WHERE request_id = ANY($1::text[])",
            [m["case"]["id"] for m in made["members"]],
        )
    }
    assert set(sent) == set(expected)
    names = {code: [m["name"] for m in given] for code, given in sent.items()}
    assert sorted(names[codes["出生登记"]]) == sorted(
        ["申请表", "居民身份证", "居民户口簿", "出生医学证明", "结婚证"]
    )
    for code in expected[1:]:
        assert sorted(names[code]) == ["居民身份证", "申请表"], names
    # The one upload and the one ID-card e-licence serve every member.
    assert len({m["reference"] for given in sent.values() for m in given if m["name"] == "申请表"}) == 1
    assert len({m["reference"] for given in sent.values() for m in given if m["name"] == "居民身份证"}) == 1

    again = await client.post(f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who, idem))
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.content == next(r for r in first if r.status_code == 201).content
    assert await counts(db, who["person_id"]) == (1, 3, 3)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.case_applications WHERE applicant_ref = $1", who["person_id"]
        )
        == 3
    )

    # Only the owner sees it; anyone else gets what a missing one gets.
    view = await client.get(f"/api/v1/life-events/applications/{made['id']}", headers=auth(who))
    assert view.status_code == 200 and view.headers["cache-control"] == "no-store"
    other = await login_resident(client, sandbox, level=3)
    theirs = await client.get(f"/api/v1/life-events/applications/{made['id']}", headers=auth(other))
    nothing = await client.get(
        "/api/v1/life-events/applications/00000000-0000-4000-8000-000000000000", headers=auth(other)
    )
    assert theirs.status_code == nothing.status_code == 404
    assert theirs.json()["code"] == nothing.json()["code"] == "life_application_not_found"
    retry = await client.post(
        f"/api/v1/life-events/applications/{made['id']}/members/{expected[0]}/retry",
        headers=auth(other, key()),
    )
    assert retry.status_code == 404


async def test_the_view_follows_a_member_through_supplement_and_all_to_conclusion(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    body = await bundle_body(client, who)
    made = await client.post(f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who, key()))
    assert made.status_code == 201, made.text
    bundle = made.json()
    url = f"/api/v1/life-events/applications/{bundle['id']}"
    cases = {m["itemCode"]: m["case"] for m in bundle["members"]}
    for case in cases.values():
        assert (await deliver(client, await advance(sandbox, case["projectNo"], "accept"))).status_code == 200
    accepted = (await client.get(url, headers=auth(who))).json()
    assert accepted["state"] == "all_accepted", accepted
    assert accepted["latestPromiseDate"] == max(m["case"]["promiseDate"] for m in accepted["members"])

    first_code, first = next(iter(cases.items()))
    event = await advance(sandbox, first["projectNo"], "request_supplement", items=["居民户口簿"])
    assert (await deliver(client, event)).status_code == 200
    waiting = (await client.get(url, headers=auth(who), params={})).json()
    assert waiting["state"] == "some_need_supplement"
    assert waiting["nextAction"]["kind"] == "answer_supplement"
    assert waiting["nextAction"]["itemCode"] == first_code
    supplement_id = waiting["nextAction"]["supplementId"]
    assert supplement_id == event["data"]["supplement_id"]
    answered = await client.post(
        f"/api/v1/cases/{first['id']}/supplements",
        json={"supplementId": supplement_id, "answer": "已补充户口簿首页"},
        headers=auth(who, key()),
    )
    assert answered.status_code == 201, answered.text
    assert (await client.get(url, headers=auth(who))).json()["state"] == "all_accepted"

    conclusion = await advance(sandbox, first["projectNo"], "conclude", result_code="0")
    assert (await deliver(client, conclusion)).status_code == 200
    for code, case in cases.items():
        if code != first_code:
            for action, fields in (("step", {"step": "承办"}), ("conclude", {"result_code": "0"})):
                event = await advance(sandbox, case["projectNo"], action, **fields)
                assert (await deliver(client, event)).status_code == 200
    done = (await client.get(url, headers=auth(who))).json()
    assert done["state"] == "all_concluded" and done["nextAction"]["kind"] == "done"
    assert {m["case"]["status"] for m in done["members"]} == {"concluded"}
    assert done["fees"] == {"totalFen": 0, "owedFen": 0, "byDepartment": []}


async def applied_with_one_refused(client, db, who: dict[str, Any], refused: str) -> dict[str, Any]:
    """The bundle applied for while the department's system refuses `refused` (the case system
    knows no active entry for it)."""
    body = await bundle_body(client, who)
    await db.execute(
        "UPDATE sandbox.catalogue_entries SET status = 'suspended' WHERE catalog_code = $1", refused
    )
    try:
        made = await client.post(
            f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who, key())
        )
    finally:
        await db.execute(
            "UPDATE sandbox.catalogue_entries SET status = 'active' WHERE catalog_code = $1", refused
        )
    assert made.status_code == 201, made.text
    bundle: dict[str, Any] = made.json()
    return bundle


async def test_a_refused_member_leaves_the_others_and_is_retried(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    codes = await codes_by_name(client)
    refused = codes["社会保障卡申领"]
    bundle = await applied_with_one_refused(client, db, who, refused)
    states = {m["itemCode"]: m for m in bundle["members"]}
    assert states[refused]["state"] == "failed" and states[refused]["failure"]["code"] == "case_refused"
    assert states[refused]["case"] is None
    assert all(m["state"] == "submitted" for code, m in states.items() if code != refused)
    assert bundle["state"] == "some_failed"
    assert bundle["nextAction"]["kind"] == "retry_member" and bundle["nextAction"]["itemCode"] == refused
    assert await counts(db, who["person_id"]) == (1, 3, 2)

    # Two retries at once under different keys: one submits the member, the other is refused.
    keys = [key(), key()]
    both = await asyncio.gather(*(client.post(states[refused]["retry"], headers=auth(who, k)) for k in keys))
    assert sorted(r.status_code for r in both) == [201, 409], [r.text for r in both]
    idem, retried = next((k, r) for k, r in zip(keys, both, strict=True) if r.status_code == 201)
    assert next(r for r in both if r.status_code == 409).json()["code"] == "member_not_failed"
    member = next(m for m in retried.json()["members"] if m["itemCode"] == refused)
    assert member["state"] == "submitted" and member["attempts"] == 2 and member["case"]["projectNo"]
    assert retried.json()["state"] == "submitted"
    assert await counts(db, who["person_id"]) == (1, 3, 3)
    replay = await client.post(states[refused]["retry"], headers=auth(who, idem))
    assert replay.status_code == 201 and replay.content == retried.content
    assert await counts(db, who["person_id"]) == (1, 3, 3)
    twice = await client.post(states[refused]["retry"], headers=auth(who, key()))
    assert twice.status_code == 409 and twice.json()["code"] == "member_not_failed"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.case_applications WHERE applicant_ref = $1", who["person_id"]
        )
        == 3
    )


async def test_a_members_application_is_encrypted_at_rest_and_one_kept_plain_before_on_its_retry(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    refused = (await codes_by_name(client))["社会保障卡申领"]
    bundle = await applied_with_one_refused(client, db, who, refused)
    rows = await db.fetch(
        "SELECT item_code, application, application_enc FROM bff.life_application_members WHERE application_id = $1",
        uuid.UUID(bundle["id"]),
    )
    assert len(rows) == 3
    for row in rows:
        assert row["application"] is None
        assert b"13800138000" not in row["application_enc"] and "张三".encode() not in row["application_enc"]
    # The cases keep no copy of the form (the case system holds it).
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.cases WHERE person_id = $1 AND form IS NOT NULL", who["person_id"]
        )
        == 0
    )

    # The failed member's application as a release before migration 1701 kept it: in plain text.
    crypto = client.app.state.auth.crypto
    enc = next(r["application_enc"] for r in rows if r["item_code"] == refused)
    plain = crypto.decrypt("application", enc)
    assert json.loads(plain)["form"]["contactPhone"] == "13800138000"
    await db.execute(
        """UPDATE bff.life_application_members SET application = $3::jsonb, application_enc = NULL
           WHERE application_id = $1 AND item_code = $2""",
        uuid.UUID(bundle["id"]),
        refused,
        plain,
    )
    retry = next(m["retry"] for m in bundle["members"] if m["itemCode"] == refused)
    retried = await client.post(retry, headers=auth(who, key()))
    assert retried.status_code == 201, retried.text
    assert next(m for m in retried.json()["members"] if m["itemCode"] == refused)["state"] == "submitted"
    sent = json.loads(
        await db.fetchval(
            """SELECT form FROM sandbox.case_applications WHERE applicant_ref = $1 AND catalog_code = $2""",
            who["person_id"],
            refused,
        )
    )
    assert sent["contactPhone"] == "13800138000"  # the application the resident gave, sent as it was
    row = await db.fetchrow(
        "SELECT application, application_enc FROM bff.life_application_members WHERE application_id = $1"
        " AND item_code = $2",
        uuid.UUID(bundle["id"]),
        refused,
    )
    assert row["application"] is None and crypto.decrypt("application", row["application_enc"]) == plain


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (
            lambda b: b.update(
                materials=[
                    *b["materials"],
                    {"name": "营业执照", "uploadId": b["materials"][0].get("uploadId")},
                ]
            ),
            422,
            "materials_invalid",
        ),
        (
            lambda b: b.update(materials=[m for m in b["materials"] if m["name"] != "出生医学证明"]),
            422,
            "materials_invalid",
        ),
        (lambda b: b.update(materials=[*b["materials"], b["materials"][-1]]), 422, "materials_invalid"),
        (lambda b: b["answers"].pop("registerHousehold"), 422, "answers_invalid"),
        (lambda b: b.update(regionCode="999999"), 400, "validation_failed"),
        (lambda b: b.update(extra=1), 400, "validation_failed"),
    ],
)
async def test_bad_submissions_are_problems_and_create_nothing(
    client, sandbox, db, mutate, status, code
) -> None:
    who = await login_resident(client, sandbox, level=3)
    body = await bundle_body(client, who)
    mutate(body)
    response = await client.post(
        f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who, key())
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert await counts(db, who["person_id"]) == (0, 0, 0)


async def test_unknown_event_and_missing_key_create_nothing(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    body = await bundle_body(client, who)
    unknown = await client.post("/api/v1/life-events/nope/applications", json=body, headers=auth(who, key()))
    assert unknown.status_code == 404 and unknown.json()["code"] == "life_event_not_found"
    keyless = await client.post(f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who))
    assert keyless.status_code == 400 and keyless.json()["code"] == "idempotency_key_missing"
    anonymous = await client.post(
        f"/api/v1/life-events/{EVENT}/applications", json=body, headers={"Idempotency-Key": key()}
    )
    assert anonymous.status_code == 401
    assert await counts(db, who["person_id"]) == (0, 0, 0)


async def test_an_unanswered_case_system_fails_the_members_not_the_bundle_and_a_retry_asks_again(
    client, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    body = await bundle_body(client, who, {**YES_HOUSEHOLD, "registerHousehold": False})
    await sandbox.put("/_control/faults/cases", json={"errorRate": 1.0, "errorKind": "503"})
    try:
        made = await client.post(
            f"/api/v1/life-events/{EVENT}/applications", json=body, headers=auth(who, key())
        )
    finally:
        await sandbox.delete("/_control/faults/cases")
    assert made.status_code == 201, made.text
    bundle = made.json()
    assert [m["state"] for m in bundle["members"]] == ["failed", "failed"]
    assert {m["failure"]["code"] for m in bundle["members"]} == {"upstream_unavailable"}
    assert bundle["state"] == "some_failed"
    member = bundle["members"][0]
    retried = await client.post(member["retry"], headers=auth(who, key()))
    assert retried.status_code == 201, retried.text
    states = {m["itemCode"]: m["state"] for m in retried.json()["members"]}
    assert states[member["itemCode"]] == "submitted"
    assert list(states.values()).count("failed") == 1
    # The case system holds exactly one case for the retried member, whichever request id it took.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.case_applications WHERE applicant_ref = $1", who["person_id"]
        )
        == 1
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.cases WHERE person_id = $1 AND project_no IS NOT NULL", who["person_id"]
        )
        == 1
    )


async def test_home_shows_a_life_event_as_one_to_do_until_every_member_concluded(client, sandbox, db) -> None:
    who = await login_resident(client, sandbox, level=3)
    made = await client.post(
        f"/api/v1/life-events/{EVENT}/applications",
        json=await bundle_body(client, who),
        headers=auth(who, key()),
    )
    assert made.status_code == 201, made.text
    bundle = made.json()
    cases = [m["case"] for m in bundle["members"]]
    for case in cases:
        assert (await deliver(client, await advance(sandbox, case["projectNo"], "accept"))).status_code == 200
    # A case of its own, outside the bundle, with a 补正 of its own.
    alone = await apply(client, who, await bookable_item(db))
    alone_no = alone["case"]["projectNo"]
    for action, fields in (("accept", {}), ("request_supplement", {"items": ["申请表签字页"]})):
        assert (await deliver(client, await advance(sandbox, alone_no, action, **fields))).status_code == 200
    first = cases[0]
    event = await advance(sandbox, first["projectNo"], "request_supplement", items=["居民户口簿"])
    assert (await deliver(client, event)).status_code == 200

    async def home() -> dict[str, Any]:
        response = await client.get("/api/v1/home", headers=auth(who))
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body: dict[str, Any] = response.json()
        return body

    shown = await home()
    bundles = shown["sections"]["bundles"]
    assert bundles["status"] == "ok" and bundles["total"] == 1, bundles
    (todo,) = bundles["items"]
    assert (
        todo["applicationId"] == bundle["id"] and todo["link"] == f"/life-events/applications/{bundle['id']}"
    )
    assert (todo["state"], todo["nextAction"]) == ("some_need_supplement", "answer_supplement")
    assert (todo["members"], todo["concluded"]) == (len(cases), 0)
    # The member's 补正 is the bundle's to-do; the lone case's is listed as ever.
    listed = [i["caseId"] for i in shown["sections"]["supplements"]["items"]]
    assert listed == [alone["case"]["id"]], listed
    assert shown["order"][0] == "bundles"

    answered = await client.post(
        f"/api/v1/cases/{first['id']}/supplements",
        json={"supplementId": event["data"]["supplement_id"], "answer": "已补充户口簿首页"},
        headers=auth(who, key()),
    )
    assert answered.status_code == 201, answered.text
    waiting = (await home())["sections"]["bundles"]["items"]
    assert [(t["state"], t["nextAction"]) for t in waiting] == [("all_accepted", "wait")], waiting
    for case in cases:
        for action, fields in (("step", {"step": "承办"}), ("conclude", {"result_code": "0"})):
            event = await advance(sandbox, case["projectNo"], action, **fields)
            assert (await deliver(client, event)).status_code == 200
    after = (await home())["sections"]["bundles"]
    assert (after["total"], after["items"]) == (0, []), after
