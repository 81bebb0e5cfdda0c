# ruff: noqa: F811 - the fixtures imported from tests/test_worker_jobs.py are parameters here
"""Applications whose answer never came leave no invisible `submitting` row, nothing is lost or
doubled when the API is killed between the case system's commit and ours, and applying works
while the item library is down when the mirror holds the guide (issue 9 section 6)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import free_port, start_process, stop_process, wait_http
from tests.test_appointment_intents import _killed_at
from tests.test_catalogue_sync import run_sync
from tests.test_journey_helpers import (
    advance,
    application,
    auth,
    bookable_item,
    deliver,
    key,
    serve_env,
    upstream_urls,
)
from tests.test_worker_jobs import AnswerLoss, hop  # noqa: F401 - fixture

APPLY = ("POST", "/cases/applications")


@pytest.fixture
async def client(make_client, sandbox_url: str, hop: AnswerLoss) -> httpx.AsyncClient:
    return await make_client(**{**upstream_urls(sandbox_url), "cases_url": f"{hop.url}/cases"})


async def _resolve(services: Any, sandbox_url: str, hop: AnswerLoss) -> None:
    from adapters import context
    from bff.wiring import open_root
    from tests.conftest import make_settings

    settings = make_settings(
        services, sandbox_url, **{**upstream_urls(sandbox_url), "cases_url": f"{hop.url}/cases"}
    )
    async with open_root(settings) as root:
        job = {j.name: j for j in root.jobs}["cases_resolve_submitting"]
        assert job.run == root.cases.resolve_submitting
        with context.budget(job.budget):
            await job.run()


async def _age(db, person_id: str) -> None:
    await db.execute(
        "UPDATE bff.cases SET created_at = created_at - interval '5 minutes' WHERE person_id = $1", person_id
    )


async def test_applications_whose_answer_never_came_leave_no_invisible_row(
    client, services, sandbox_url, sandbox, db, hop
) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    lost_answer, lost_request = await application(client, who, item), await application(client, who, item)

    hop.lose[APPLY] = "answer"  # the case system takes it; we do not hear
    first = await client.post("/api/v1/cases", json=lost_answer, headers=auth(who, key()))
    assert first.status_code == 503 and "retry-after" in first.headers, first.text
    hop.lose[APPLY] = "request"  # the case system never hears of it
    second = await client.post("/api/v1/cases", json=lost_request, headers=auth(who, key()))
    assert second.status_code == 503 and "retry-after" in second.headers, second.text
    del hop.lose[APPLY]
    rows = await db.fetch(
        "SELECT id, status, project_no FROM bff.cases WHERE person_id = $1", who["person_id"]
    )
    assert sorted((r["status"], r["project_no"]) for r in rows) == [
        ("submitting", None),
        ("submitting", None),
    ]
    listed = (await client.get("/api/v1/cases", headers=auth(who))).json()["items"]
    assert listed == []

    await _resolve(services, sandbox_url, hop)  # younger than two minutes: maybe in flight, left alone
    assert await db.fetchval("SELECT count(*) FROM bff.cases WHERE person_id = $1", who["person_id"]) == 2

    await _age(db, who["person_id"])
    await _resolve(services, sandbox_url, hop)
    rows = await db.fetch(
        "SELECT id, status, project_no FROM bff.cases WHERE person_id = $1", who["person_id"]
    )
    # The one the case system has is attached and shows; the one it never got is gone.
    assert [(r["status"], r["project_no"] is not None) for r in rows] == [("submitted", True)]
    listed = (await client.get("/api/v1/cases", headers=auth(who))).json()["items"]
    assert [c["id"] for c in listed] == [str(rows[0]["id"])]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.cases WHERE status = 'submitting' AND person_id = $1", who["person_id"]
        )
        == 0
    )
    # A second run changes nothing.
    await _resolve(services, sandbox_url, hop)
    assert await db.fetchval("SELECT count(*) FROM bff.cases WHERE person_id = $1", who["person_id"]) == 1


async def test_applying_works_while_the_item_library_is_down(
    client, services, sandbox_url, sandbox, db
) -> None:
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    body = await application(client, who, item)
    await run_sync(services, sandbox_url, full=False)  # the mirror holds the guide
    put = await sandbox.put("/_control/faults/catalogue", json={"errorRate": 1.0, "errorKind": "503"})
    assert put.status_code in (200, 204), put.text
    try:
        down = await sandbox.get("/catalogue/regions")
        assert down.status_code == 503  # the item library is really down
        made = await client.post("/api/v1/cases", json=body, headers=auth(who, key()))
        assert made.status_code == 201, made.text
        guide = await client.get(f"/api/v1/items/{item['code']}", params={"region": item["region"]})
        assert guide.status_code == 200, guide.text
    finally:
        await sandbox.delete("/_control/faults/catalogue")
    assert made.json()["case"]["status"] == "submitted"


async def _serve_through(services: Any, sandbox_url: str, hop: AnswerLoss) -> tuple[Any, str]:
    port = free_port()
    env = serve_env(
        services, sandbox_url, port, CASES_URL=f"{hop.url}/cases", API_WORKERS="1", LOG_LEVEL="WARNING"
    )
    proc = start_process([sys.executable, "-m", "bff.cli", "serve"], env, "bff-kill-cases")
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/healthz", proc)
    return proc, f"http://127.0.0.1:{port}"


async def test_kill_9_between_the_case_systems_commit_and_ours(
    client, services, sandbox_url, sandbox, db, hop
) -> None:
    """Two applications, each killed after the case system committed and before we did. The
    resident retries one with the same key and learns its case; the resolver attaches the other.
    Each is one case here and one there, with its uploads attached: nothing lost, nothing doubled."""
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    bodies = [await application(client, who, item), await application(client, who, item)]
    keys = [key(), key()]
    for body, k in zip(bodies, keys, strict=True):
        hop.seen.clear()  # each kill is counted on its own
        proc, url = await _serve_through(services, sandbox_url, hop)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30) as api:
                await _killed_at(
                    hop,
                    proc,
                    APPLY,
                    lambda body=body, k=k: api.post("/api/v1/cases", json=body, headers=auth(who, k)),
                )
        finally:
            stop_process(proc)

    upstream = await db.fetch(
        "SELECT project_no, request_id FROM sandbox.case_applications WHERE applicant_ref = $1",
        who["person_id"],
    )
    assert len(upstream) == 2  # the case system has both
    rows = await db.fetch(
        "SELECT id, status, project_no FROM bff.cases WHERE person_id = $1", who["person_id"]
    )
    assert sorted((r["status"], r["project_no"]) for r in rows) == [("submitting", None)] * 2

    # The resident retries the first with its key once the dead process's lease has run out.
    await db.execute(
        "UPDATE bff.idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = $1", keys[0]
    )
    again = await client.post("/api/v1/cases", json=bodies[0], headers=auth(who, keys[0]))
    assert again.status_code == 201 and again.json()["case"]["status"] == "submitted", again.text
    # The second: nobody retries; the resolver settles it from the case system's truth.
    await _age(db, who["person_id"])
    await _resolve(services, sandbox_url, hop)

    rows = await db.fetch(
        "SELECT id, status, project_no FROM bff.cases WHERE person_id = $1 ORDER BY created_at",
        who["person_id"],
    )
    assert [r["status"] for r in rows] == ["submitted", "submitted"]
    assert {(str(r["id"]), r["project_no"]) for r in rows} == {
        (u["request_id"], u["project_no"]) for u in upstream
    }
    assert again.json()["case"]["id"] in {str(r["id"]) for r in rows}
    listed = (await client.get("/api/v1/cases", headers=auth(who))).json()["items"]
    assert sorted(c["id"] for c in listed) == sorted(str(r["id"]) for r in rows)
    uploads = [m["uploadId"] for body in bodies for m in body["materials"] if m.get("uploadId")]
    if uploads:
        assert await db.fetchval(
            "SELECT count(*) FROM bff.uploads WHERE id::text = ANY($1::text[]) AND attached_at IS NOT NULL",
            uploads,
        ) == len(uploads)
    # Retrying both keys now, and resolving again, doubles nothing (the second key's dead owner
    # holds it until its lease runs out: 409 with Retry-After until then).
    early = await client.post("/api/v1/cases", json=bodies[1], headers=auth(who, keys[1]))
    assert early.status_code == 409 and early.json()["code"] == "idempotency_in_progress", early.text
    await db.execute(
        "UPDATE bff.idempotency_keys SET lease_until = now() - interval '1 second' WHERE key = $1", keys[1]
    )
    for body, k in zip(bodies, keys, strict=True):
        replay = await client.post("/api/v1/cases", json=body, headers=auth(who, k))
        assert replay.status_code == 201, replay.text
    await _resolve(services, sandbox_url, hop)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM sandbox.case_applications WHERE applicant_ref = $1", who["person_id"]
        )
        == 2
    )
    assert await db.fetchval("SELECT count(*) FROM bff.cases WHERE person_id = $1", who["person_id"]) == 2
    submitted = await db.fetchval(
        """
        SELECT count(*) FROM bff.case_events e JOIN bff.cases c ON c.id = e.case_id
        WHERE c.person_id = $1 AND e.type = 'submitted'
        """,
        who["person_id"],
    )
    assert submitted == 2, submitted


async def _awaiting_supplement(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any], item: dict[str, str]
) -> tuple[dict[str, Any], str]:
    made = await client.post(
        "/api/v1/cases", json=await application(client, who, item), headers=auth(who, key())
    )
    assert made.status_code == 201, made.text
    case: dict[str, Any] = made.json()
    project_no = case["case"]["projectNo"]
    await deliver(client, await advance(sandbox, project_no, "accept"))
    request = await advance(
        sandbox, project_no, "request_supplement", items=["申请表签字页"], opinion="缺签字"
    )
    assert (await deliver(client, request)).status_code == 200
    return case, str(request["data"]["supplement_id"])


async def test_a_supplement_answer_whose_reply_never_came_is_settled_from_the_case_systems_truth(
    client, services, sandbox_url, sandbox, db, hop
) -> None:
    """补正 answered, the reply lost: 503 to the resident, then the resolver asks the case system.
    The one it has is shown (timeline, no open 补正: the case system cannot take an answer back, so
    the resident is told it went through); the one it never got is voided there and ends failed,
    the 补正 still open to answer again, and a retry of that key says it was given up."""
    who = await login_resident(client, sandbox, level=3)
    item = await bookable_item(db)
    (went, went_sid), (lost, lost_sid) = [
        await _awaiting_supplement(client, sandbox, who, item) for _ in range(2)
    ]
    route = {
        c["case"]["id"]: ("POST", f"/cases/applications/{c['case']['projectNo']}/supplements")
        for c in (went, lost)
    }
    keys = {went["case"]["id"]: key(), lost["case"]["id"]: key()}

    async def answer(case: dict[str, Any], sid: str, k: str) -> httpx.Response:
        return await client.post(
            f"/api/v1/cases/{case['case']['id']}/supplements",
            json={"supplementId": sid, "answer": "已补签"},
            headers=auth(who, k),
        )

    hop.lose[route[went["case"]["id"]]] = "answer"  # the case system takes it; we do not hear
    hop.lose[route[lost["case"]["id"]]] = "request"  # the case system never hears of it
    for case, sid in ((went, went_sid), (lost, lost_sid)):
        failed = await answer(case, sid, keys[case["case"]["id"]])
        assert failed.status_code == 503 and "retry-after" in failed.headers, failed.text
        assert "补正" in failed.json()["detail"], failed.text
    hop.lose.clear()
    assert [
        r["status"]
        for r in await db.fetch(
            "SELECT status FROM bff.case_supplement_answers WHERE person_id = $1", who["person_id"]
        )
    ] == ["sending", "sending"]

    await _resolve(services, sandbox_url, hop)  # younger than two minutes: maybe in flight, left alone
    await db.execute(
        "UPDATE bff.case_supplement_answers SET created_at = created_at - interval '5 minutes' WHERE person_id = $1",
        who["person_id"],
    )
    await _resolve(services, sandbox_url, hop)
    states = {
        str(r["case_id"]): r["status"]
        for r in await db.fetch(
            "SELECT case_id, status FROM bff.case_supplement_answers WHERE person_id = $1", who["person_id"]
        )
    }
    assert states == {went["case"]["id"]: "answered", lost["case"]["id"]: "failed"}

    def answered(detail: dict[str, Any]) -> int:
        return sum(1 for e in detail["timeline"] if e["kind"] == "supplement_answered")

    seen = (await client.get(f"/api/v1/cases/{went['case']['id']}", headers=auth(who))).json()
    assert answered(seen) == 1 and seen["case"]["openSupplementId"] is None, seen
    seen = (await client.get(f"/api/v1/cases/{lost['case']['id']}", headers=auth(who))).json()
    assert answered(seen) == 0 and seen["case"]["openSupplementId"] == lost_sid, seen

    # The given-up key says so; a new one answers the 补正 that is still open.
    voided = await answer(lost, lost_sid, keys[lost["case"]["id"]])
    assert voided.status_code == 409 and voided.json()["code"] == "supplement_attempt_voided", voided.text
    again = await answer(lost, lost_sid, key())
    assert again.status_code == 201, again.text
    # A retry of the key that went through learns it, and nothing is doubled here or there.
    learnt = await answer(went, went_sid, keys[went["case"]["id"]])
    assert learnt.status_code == 201 and answered(learnt.json()) == 1, learnt.text
    for case in (went, lost):
        assert (
            await db.fetchval(
                "SELECT count(*) FROM sandbox.case_events WHERE project_no = $1 AND type = 'supplement_answered'",
                case["case"]["projectNo"],
            )
            == 1
        )
