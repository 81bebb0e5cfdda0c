"""Every object route with another resident's id: 404 (as if it did not exist) and an audit record."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.test_journey_helpers import (
    apply,
    auth,
    book,
    bookable_item,
    conclude,
    key,
    open_days,
    upload,
    upstream_urls,
)


@pytest.fixture
async def client(make_client, sandbox_url) -> httpx.AsyncClient:
    return await make_client(**upstream_urls(sandbox_url))


async def test_matrix_of_object_routes(client, sandbox, db) -> None:
    alice = await login_resident(client, sandbox, level=3)
    mallory = await login_resident(client, sandbox, level=3)
    mallory_kiosk = await login_resident(client, sandbox, channel="kiosk", resident=mallory["resident"])
    item = await bookable_item(db)
    days = await open_days(client, alice, item, 2)
    appointment = await book(client, alice, days[0]["slots"][0]["slotId"])
    hold = await client.post(
        "/api/v1/appointments/holds",
        json={"slotId": days[1]["slots"][1]["slotId"]},
        headers=auth(alice, key()),
    )
    assert hold.status_code == 201
    upload_id = await upload(client, alice)
    case = await apply(client, alice, item)
    case_id = case["case"]["id"]
    await conclude(client, sandbox, alice, case)
    rated = await client.post(
        f"/api/v1/cases/{case_id}/rating",
        json={
            "level": 4,
            "indicators": dict.fromkeys(
                ["整体满意度", "办事效率", "办事指南精确度", "办事便捷度", "平台操作性"], 4
            ),
        },
        headers=auth(alice, key()),
    )
    assert rated.status_code == 201, rated.text
    rating_id = rated.json()["id"]
    a = appointment["id"]
    check_in = f"/api/v1/appointments/{a}/check-in"
    matrix = [
        ("GET", f"/api/v1/appointments/{a}", None, mallory, "appointment_not_found"),
        ("POST", f"/api/v1/appointments/{a}/cancel", None, mallory, "appointment_not_found"),
        (
            "POST",
            f"/api/v1/appointments/{a}/reschedule",
            {"slotId": days[1]["slots"][2]["slotId"]},
            mallory,
            "appointment_not_found",
        ),
        ("POST", check_in, None, mallory_kiosk, "appointment_not_found"),
        ("GET", f"/api/v1/cases/{case_id}", None, mallory, "case_not_found"),
        (
            "POST",
            f"/api/v1/cases/{case_id}/supplements",
            {"supplementId": "BZ1", "answer": "x"},
            mallory,
            "case_not_found",
        ),
        (
            "POST",
            f"/api/v1/cases/{case_id}/rating",
            {"level": 1, "indicators": {}},
            mallory,
            "case_not_found",
        ),
        ("GET", f"/api/v1/uploads/{upload_id}", None, mallory, "upload_not_found"),
        ("GET", f"/api/v1/ratings/{rating_id}", None, mallory, "rating_not_found"),
    ]
    for method, path, body, who, code in matrix:
        before = await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE subject = $1", mallory["person_id"]
        )
        headers = auth(who, key())
        if who is mallory_kiosk:
            headers.update(who["kiosk"].headers(method, path))
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == code, path
        audits = await db.fetch(
            "SELECT action, object, result FROM bff.audit_log WHERE subject = $1 ORDER BY seq OFFSET $2",
            mallory["person_id"],
            before,
        )
        assert [r["result"] for r in audits] == ["denied_not_owner"], (path, audits)
        # A random id is a plain 404 too (and not an authorisation failure).
        unknown = path.replace(str(path.split("/")[4]), str(uuid.uuid4()))
        headers = auth(who, key())
        if who is mallory_kiosk:
            headers.update(who["kiosk"].headers(method, unknown))
        assert (await client.request(method, unknown, json=body, headers=headers)).status_code == 404
    # Another's hold and upload cannot be used either, and they look missing.
    response = await client.post(
        "/api/v1/appointments", json={"holdId": hold.json()["holdId"]}, headers=auth(mallory, key())
    )
    assert response.status_code == 404 and response.json()["code"] == "hold_not_found"
    # Nothing of Alice's changed.
    assert (await client.get(f"/api/v1/appointments/{a}", headers=auth(alice))).json()["status"] == "booked"
    assert (await client.get(f"/api/v1/cases/{case_id}", headers=auth(alice))).json()["case"][
        "status"
    ] == "rated"
    # Lists show only one's own.
    assert (await client.get("/api/v1/appointments", headers=auth(mallory))).json()["items"] == []
    assert (await client.get("/api/v1/cases", headers=auth(mallory))).json()["items"] == []
