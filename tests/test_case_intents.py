# ruff: noqa: F811 - the fixtures imported from tests/test_worker_jobs.py are parameters here
"""Applications whose answer never came leave no invisible `submitting` row, and applying works
while the item library is down when the mirror holds the guide (issue 9 section 6)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_catalogue_sync import run_sync
from tests.test_journey_helpers import application, auth, bookable_item, key, upstream_urls
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
