"""The case system's fees (缴费通知) over real HTTP: issued as a case event in integer fen, told when
paid (once, refusing a wrong amount), a receipt, and a refund request on 不予受理 or a waiver."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx


async def accepted_case(sandbox: httpx.AsyncClient, db: asyncpg.Connection) -> str:
    code = await db.fetchval(
        "SELECT catalog_code FROM sandbox.catalogue_entries WHERE status = 'active' ORDER BY catalog_code LIMIT 1"
    )
    assert code is not None
    created = await sandbox.post(
        "/cases/applications",
        json={
            "request_id": "REQ" + secrets.token_hex(8),
            "catalog_code": code,
            "task_code": "T" + code,
            "region_code": "430000",
            "applicant_ref": "resident-" + secrets.token_hex(4),
            "channel": "online",
            "form": {},
            "materials": [],
        },
    )
    assert created.status_code == 201, created.text
    project_no: str = created.json()["project_no"]
    accepted = await sandbox.post(
        f"/cases/_control/applications/{project_no}/advance", json={"action": "accept"}
    )
    assert accepted.status_code == 201, accepted.text
    return project_no


async def feed_since(sandbox: httpx.AsyncClient, since: int) -> list[dict[str, Any]]:
    response = await sandbox.get("/cases/changes", params={"since": since, "limit": 500})
    return response.json()["events"]  # type: ignore[no-any-return]


async def issue(sandbox: httpx.AsyncClient, project_no: str, lines: list[dict[str, Any]]) -> httpx.Response:
    payable_by = (date.today() + timedelta(days=7)).isoformat()
    return await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee", json={"lines": lines, "payable_by": payable_by}
    )


async def test_fee_is_issued_as_a_case_event_in_integer_fen(
    sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    project_no = await accepted_case(sandbox, db)
    since = int(await db.fetchval("SELECT coalesce(max(seq), 0) FROM sandbox.case_events"))
    issued = await issue(
        sandbox,
        project_no,
        [{"name": "不动产登记费", "amount_fen": 8000}, {"name": "工本费", "amount_fen": 1050}],
    )
    assert issued.status_code == 201, issued.text
    fee_id = issued.json()["fee"]["fee_id"]
    [event] = [e for e in await feed_since(sandbox, since) if e["project_no"] == project_no]
    assert event["type"] == "fee_issued"
    data = event["data"]
    assert data["fee_id"] == fee_id and data["total_fen"] == 9050 and type(data["total_fen"]) is int
    assert [type(line["amount_fen"]) for line in data["lines"]] == [int, int]
    assert data["lines"] == [
        {"name": "不动产登记费", "amount_fen": 8000},
        {"name": "工本费", "amount_fen": 1050},
    ]
    assert len(data["payment_code"]) == 20 and data["payment_code"].isdigit()
    assert data["payable_by"] == (date.today() + timedelta(days=7)).isoformat() and data["issuing_department"]
    fee = (await sandbox.get(f"/cases/fees/{fee_id}")).json()
    assert (
        fee["status"] == "issued" and fee["total_fen"] == 9050 and fee["payment_code"] == data["payment_code"]
    )
    # One open fee at a time; no fractional or negative lines.
    assert (await issue(sandbox, project_no, [{"name": "x", "amount_fen": 1}])).status_code == 409
    other = await accepted_case(sandbox, db)
    assert (await issue(sandbox, other, [{"name": "x", "amount_fen": 0}])).status_code == 422
    assert (await issue(sandbox, other, [{"name": "x", "amount_fen": 1.5}])).status_code == 400


async def test_paid_once_then_receipt_and_refund_request(
    sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    project_no = await accepted_case(sandbox, db)
    fee_id = (await issue(sandbox, project_no, [{"name": "登记费", "amount_fen": 8000}])).json()["fee"][
        "fee_id"
    ]
    since = int(await db.fetchval("SELECT max(seq) FROM sandbox.case_events"))
    paid = {
        "out_trade_no": "SX" + secrets.token_hex(8),
        "transaction_id": "4200" + secrets.token_hex(12),
        "paid_at": datetime.now(UTC).isoformat(),
    }
    wrong = await sandbox.post(
        f"/cases/fees/{fee_id}/paid",
        json={**paid, "request_id": "P1" + secrets.token_hex(4), "amount_fen": 7999},
    )
    assert wrong.status_code == 409 and wrong.json()["error"] == "amount_mismatch"
    request_id = "P2" + secrets.token_hex(4)
    answers = await asyncio.gather(
        *(
            sandbox.post(
                f"/cases/fees/{fee_id}/paid", json={**paid, "request_id": request_id, "amount_fen": 8000}
            )
            for _ in range(5)
        )
    )
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == answers[0].json() for a in answers)
    again = await sandbox.post(
        f"/cases/fees/{fee_id}/paid",
        json={**paid, "request_id": "P3" + secrets.token_hex(4), "amount_fen": 8000},
    )
    assert again.status_code == 200 and again.json()["events"] == []
    other_payment = {**paid, "transaction_id": "4200" + secrets.token_hex(12)}
    double = await sandbox.post(
        f"/cases/fees/{fee_id}/paid",
        json={**other_payment, "request_id": "P4" + secrets.token_hex(4), "amount_fen": 8000},
    )
    assert double.status_code == 409

    events = [e for e in await feed_since(sandbox, since) if e["project_no"] == project_no]
    assert [e["type"] for e in events] == ["fee_paid", "receipt_issued"]
    assert events[0]["data"]["amount_fen"] == 8000 and events[0]["status"] == "in_progress"
    assert events[0]["data"]["transaction_id"] == paid["transaction_id"]
    receipt_no = events[1]["data"]["receipt_no"]
    fee = (await sandbox.get(f"/cases/fees/{fee_id}")).json()
    assert fee["status"] == "paid" and fee["receipt_no"] == receipt_no and fee["paid"]["amount_fen"] == 8000

    refund = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee-refund", json={"reason": "减免", "amount_fen": 3000}
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["type"] == "refund_requested"
    assert refund.json()["data"] | {"refund_no": None} == {
        "fee_id": fee_id,
        "amount_fen": 3000,
        "reason": "减免",
        "refund_no": None,
    }
    rest = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee-refund", json={"reason": "不予受理"}
    )
    assert rest.json()["data"]["amount_fen"] == 5000
    beyond = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee-refund", json={"amount_fen": 1}
    )
    assert beyond.status_code == 409
    assert (await sandbox.get(f"/cases/fees/{fee_id}")).json()["status"] == "refund_requested"
