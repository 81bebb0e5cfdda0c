"""One payment per fee-issuing department across a life-event bundle (一件事一次办), against real
PostgreSQL and Redis and the sandbox case system and WeChat Pay over HTTP: a 合单支付 over the
department's fees, paid once, each fee paid, reported, refundable on its own; concurrent requests
make one combine; a missed notification is found by the reconciler; an expired combine closes whole;
a forged combine notification changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.payment_helpers import (
    Relay,
    notification,
    order_row,
    pay,
    payment_client,
    platform_key,
    set_policy,
    transaction,
    verify_pay_sign,
    wait_for,
)
from tests.test_catalogue_sync import run_sync
from tests.test_journey_helpers import advance, auth, deliver, key
from tests.test_life_applications import EVENT, bundle_body

POLICE = "长沙市公安局岳麓分局"
HEALTH = "长沙市岳麓区医疗保障局"


@pytest.fixture
async def relay() -> Any:
    r = await Relay().start()
    yield r
    await r.stop()


@pytest.fixture
async def client(services, sandbox_url, make_client, relay) -> httpx.AsyncClient:
    await run_sync(services, sandbox_url)
    made = await payment_client(make_client, sandbox_url, relay, payment_check_after_s=0.0)
    await made.app.state.root.catalogue_mirror.refresh(force=True)
    return made


def root_of(client: httpx.AsyncClient) -> Any:
    return client.app.state.root  # type: ignore[attr-defined]


async def bundle_with_fees(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A newborn bundle of three accepted members: two fees from the police (1550 and 300 fen), one
    from the medical-insurance bureau (800 fen). (bundle view, the fees as the case system issued them)"""
    made = await client.post(
        f"/api/v1/life-events/{EVENT}/applications",
        json=await bundle_body(client, who),
        headers=auth(who, key()),
    )
    assert made.status_code == 201, made.text
    bundle = made.json()
    fees = []
    plan = [
        (POLICE, [{"name": "工本费", "amount_fen": 1000}, {"name": "登记费", "amount_fen": 550}]),
        (POLICE, [{"name": "证件费", "amount_fen": 300}]),
        (HEALTH, [{"name": "制卡费", "amount_fen": 800}]),
    ]
    for member, (department, lines) in zip(bundle["members"], plan, strict=True):
        project_no = member["case"]["projectNo"]
        assert (await deliver(client, await advance(sandbox, project_no, "accept"))).status_code == 200
        issued = await sandbox.post(
            f"/cases/_control/applications/{project_no}/fee",
            json={
                "lines": lines,
                "payable_by": (date.today() + timedelta(days=7)).isoformat(),
                "issuing_department": department,
                "deliver": False,
            },
        )
        assert issued.status_code == 201, issued.text
        assert (await deliver(client, issued.json()["event"])).status_code == 200
        fees.append(issued.json()["fee"])
    view = await client.get(f"/api/v1/life-events/applications/{bundle['id']}", headers=auth(who))
    return view.json(), fees


def pay_department(
    client: httpx.AsyncClient, who: dict[str, Any], bundle_id: str, department: str, idem: str | None = None
) -> Any:
    return client.post(
        f"/api/v1/life-events/applications/{bundle_id}/payments",
        json={"department": department},
        headers=auth(who, idem or key()),
    )


async def test_one_payment_per_department_pays_each_fee_once_and_each_stays_its_own(
    client, sandbox, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    bundle, fees = await bundle_with_fees(client, sandbox, who)
    by = {d["department"]: d for d in bundle["fees"]["byDepartment"]}
    pay_url = f"/api/v1/life-events/applications/{bundle['id']}/payments"
    assert (by[POLICE]["owedFen"], by[HEALTH]["owedFen"], bundle["fees"]["owedFen"]) == (1850, 800, 2650)
    assert by[POLICE]["pay"] == by[HEALTH]["pay"] == pay_url
    assert bundle["nextAction"] == {
        "kind": "pay_fee",
        "text": f"一次缴纳{POLICE}的费用",
        "itemCode": None,
        "caseId": None,
        "supplementId": None,
        "href": pay_url,
        "department": POLICE,
    }

    # Eight different requests at once for the police's fees: one combine, the same answer to all.
    idem = key()
    answers = await asyncio.gather(
        pay_department(client, who, bundle["id"], POLICE, idem),
        *(pay_department(client, who, bundle["id"], POLICE) for _ in range(7)),
    )
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert {r.headers["cache-control"] for r in answers} == {"no-store"}
    paying = answers[0].json()
    assert {r.json()["id"] for r in answers} == {paying["id"]}
    assert (paying["kind"], paying["status"], paying["amountFen"], paying["tradeType"]) == (
        "combined",
        "paying",
        1850,
        "JSAPI",
    )
    assert verify_pay_sign(paying["jsapi"]) and paying["jsapi"]["package"].startswith("prepay_id=wx")
    assert sorted((p["feeId"], p["amountFen"]) for p in paying["payments"]) == sorted(
        [(fees[0]["fee_id"], 1550), (fees[1]["fee_id"], 300)]
    )
    assert {p["combineId"] for p in paying["payments"]} == {paying["id"]}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.payment_combines WHERE application_id = $1::uuid", bundle["id"]
        )
        == 1
    )
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.payment_orders WHERE fee_id = ANY($1::text[])",
            [f["fee_id"] for f in fees],
        )
        == 2
    )
    # The platform holds one combine of the two fees' orders.
    combine_no = await db.fetchval(
        "SELECT combine_out_trade_no FROM bff.payment_combines WHERE id = $1::uuid", paying["id"]
    )
    subs = await db.fetch(
        "SELECT out_trade_no, total FROM sandbox.wechatpay_orders WHERE combine_out_trade_no = $1", combine_no
    )
    assert sorted(r["total"] for r in subs) == [300, 1550]
    assert {r["out_trade_no"] for r in subs} == {p["outTradeNo"] for p in paying["payments"]}
    # A sub-order is paid with its sheet, never alone.
    alone = await sandbox.post(f"/_control/wechatpay/orders/{subs[0]['out_trade_no']}/pay", json={})
    assert alone.status_code == 409 and alone.json()["error"] == "part_of_combine"

    # The resident confirms once: one notification, both fees paid, one ledger row each.
    paid = await sandbox.post(f"/_control/wechatpay/combines/{combine_no}/pay", json={})
    assert paid.status_code == 200 and paid.json()["sub_orders"] == 2, paid.text
    ids = [uuid.UUID(p["id"]) for p in paying["payments"]]
    assert await wait_for(
        db, "SELECT count(*) = 2 FROM bff.payment_orders WHERE id = ANY($1::uuid[]) AND status = 'paid'", ids
    )
    ledger = await db.fetch(
        "SELECT order_id, amount_fen, via, external_ref FROM bff.payment_ledger WHERE order_id = ANY($1::uuid[])",
        ids,
    )
    assert sorted((r["amount_fen"], r["via"]) for r in ledger) == [(300, "notify"), (1550, "notify")]
    assert len({r["external_ref"] for r in ledger}) == 2  # each sub-order its own transaction
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.outbox WHERE topic = 'payment.changed' AND dedup_key LIKE ANY($1::text[])",
            [f"payment:{i}:paid:%" for i in ids],
        )
        == 2
    )
    # Each fee is reported to the case system on its own.
    assert await root_of(client).payments.report_paid() >= 2  # (and whatever an earlier test left)
    for fee in fees[:2]:
        held = (await sandbox.get(f"/cases/fees/{fee['fee_id']}")).json()
        assert held["status"] == "paid", held

    # The same key again: the recorded answer; the bundle's view owes the police nothing now.
    again = await pay_department(client, who, bundle["id"], POLICE, idem)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    view = (await client.get(f"/api/v1/life-events/applications/{bundle['id']}", headers=auth(who))).json()
    by = {d["department"]: d for d in view["fees"]["byDepartment"]}
    assert (by[POLICE]["owedFen"], by[POLICE]["pay"], by[HEALTH]["owedFen"]) == (0, None, 800)
    assert view["nextAction"]["department"] == HEALTH
    done = await pay_department(client, who, bundle["id"], POLICE)
    assert done.status_code == 409 and done.json()["code"] == "no_fee_due"

    # One fee at a department: that fee's own order.
    single = await pay_department(client, who, bundle["id"], HEALTH)
    assert single.status_code == 201, single.text
    one = single.json()
    assert (one["kind"], one["amountFen"], one["payments"][0]["combineId"]) == ("single", 800, None)
    await pay(sandbox, one["payments"][0]["outTradeNo"])
    assert await wait_for(db, "SELECT status = 'paid' FROM bff.payment_orders WHERE id = $1::uuid", one["id"])
    assert await root_of(client).payments.report_paid() >= 1

    # A refund of one fee refunds that sub-order alone.
    project_no = bundle["members"][1]["case"]["projectNo"]
    asked = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee-refund", json={"reason": "减免", "deliver": False}
    )
    assert asked.status_code == 201, asked.text
    assert (await deliver(client, asked.json())).status_code == 200
    assert await root_of(client).payments.submit_refunds() == 1
    refunds = (await sandbox.get("/_control/wechatpay/state")).json()["refunds"]
    mine = [r for r in refunds if r["out_trade_no"] in {p["outTradeNo"] for p in paying["payments"]}]
    assert [(r["refund"], r["total"]) for r in mine] == [(300, 300)], mine
    # It settles through its notification like any refund (and leaves nothing open for other tests).
    finished = await sandbox.post(f"/_control/wechatpay/refunds/{mine[0]['out_refund_no']}/success", json={})
    assert finished.status_code == 200, finished.text
    assert await wait_for(
        db,
        "SELECT status = 'refunded' FROM bff.payment_orders WHERE out_trade_no = $1",
        mine[0]["out_trade_no"],
    )

    # Bad input changes nothing: an unknown department, someone else's bundle, an empty name.
    unknown = await pay_department(client, who, bundle["id"], "不存在的部门")
    assert unknown.status_code == 404 and unknown.json()["code"] == "department_unknown"
    other = await login_resident(client, sandbox, channel="miniprogram", level=3)
    theirs = await pay_department(client, other, bundle["id"], HEALTH)
    assert theirs.status_code == 404 and theirs.json()["code"] == "life_application_not_found"
    empty = await client.post(pay_url, json={"department": ""}, headers=auth(who, key()))
    assert empty.status_code == 400, empty.text
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.payment_combines WHERE application_id = $1::uuid", bundle["id"]
        )
        == 1
    )


async def test_a_missed_combine_notification_is_found_and_an_expired_combine_closes_whole(
    client, sandbox, db: asyncpg.Connection
) -> None:
    payments = root_of(client).payments
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    bundle, _ = await bundle_with_fees(client, sandbox, who)

    # Unpaid past its time: closed at the platform as a whole, both orders closed.
    first = (await pay_department(client, who, bundle["id"], POLICE)).json()
    ids = [uuid.UUID(p["id"]) for p in first["payments"]]
    await db.execute(
        "UPDATE bff.payment_orders SET time_expire = now() - interval '1 second' WHERE id = ANY($1::uuid[])",
        ids,
    )
    await payments.reconcile()
    await payments.reconcile()
    assert {(await order_row(db, str(i)))["status"] for i in ids} == {"closed"}
    combine_no = await db.fetchval(
        "SELECT combine_out_trade_no FROM bff.payment_combines WHERE id = $1::uuid", first["id"]
    )
    states = await db.fetch(
        "SELECT trade_state FROM sandbox.wechatpay_orders WHERE combine_out_trade_no = $1", combine_no
    )
    assert [r["trade_state"] for r in states] == ["CLOSED", "CLOSED"]

    # Still owed: a new combine; its notification is lost, the reconciler's one query finds both paid.
    second = await pay_department(client, who, bundle["id"], POLICE)
    assert second.status_code == 201, second.text
    again = second.json()
    assert again["id"] != first["id"] and again["status"] == "paying"
    combine_no = await db.fetchval(
        "SELECT combine_out_trade_no FROM bff.payment_combines WHERE id = $1::uuid", again["id"]
    )
    try:
        await set_policy(sandbox, drop=True)
        assert (
            await sandbox.post(f"/_control/wechatpay/combines/{combine_no}/pay", json={})
        ).status_code == 200
    finally:
        await set_policy(sandbox)
    await payments.reconcile()
    ids = [uuid.UUID(p["id"]) for p in again["payments"]]
    ledger = await db.fetch(
        "SELECT via, amount_fen FROM bff.payment_ledger WHERE order_id = ANY($1::uuid[])", ids
    )
    assert sorted((r["via"], r["amount_fen"]) for r in ledger) == [("reconcile", 300), ("reconcile", 1550)]
    await payments.reconcile()  # again: nothing more
    assert (
        await db.fetchval("SELECT count(*) FROM bff.payment_ledger WHERE order_id = ANY($1::uuid[])", ids)
        == 2
    )


async def test_a_forged_combine_notification_changes_nothing(client, sandbox, db: asyncpg.Connection) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    bundle, _ = await bundle_with_fees(client, sandbox, who)
    paying = (await pay_department(client, who, bundle["id"], POLICE)).json()
    combine_no = await db.fetchval(
        "SELECT combine_out_trade_no FROM bff.payment_combines WHERE id = $1::uuid", paying["id"]
    )
    parts = paying["payments"]
    serial, platform = await platform_key(db)

    def sub(part: dict[str, Any], total: int) -> dict[str, Any]:
        tx = transaction(part["outTradeNo"], total)
        return {
            "mchid": tx["mchid"],
            "out_trade_no": tx["out_trade_no"],
            "trade_state": "SUCCESS",
            "trade_type": "JSAPI",
            "transaction_id": tx["transaction_id"],
            "success_time": tx["success_time"],
            "attach": part["feeId"],
            "amount": {"total_amount": total, "payer_amount": total, "currency": "CNY"},
        }

    base = {
        "combine_appid": transaction("x" * 6, 1)["appid"],
        "combine_mchid": transaction("x" * 6, 1)["mchid"],
    }
    forged = [
        # Signed by the platform's key, but one sub-order's amount is not ours.
        {
            **base,
            "combine_out_trade_no": combine_no,
            "sub_orders": [sub(parts[0], parts[0]["amountFen"]), sub(parts[1], 1)],
        },
        # A sub-order missing.
        {**base, "combine_out_trade_no": combine_no, "sub_orders": [sub(parts[0], parts[0]["amountFen"])]},
        # A combine that is not ours.
        {
            **base,
            "combine_out_trade_no": "NOTOURS" + key()[:8],
            "sub_orders": [sub(p, p["amountFen"]) for p in parts],
        },
    ]
    codes = []
    for plaintext in forged:
        body, headers = notification(plaintext, serial, platform)
        answer = await client.post("/api/v1/payments/wechat/notify", content=body, headers=headers)
        codes.append((answer.status_code, answer.json()["code"]))
    assert codes == [
        (400, "payment_notification_mismatch"),
        (400, "payment_notification_mismatch"),
        (400, "payment_order_unknown"),
    ]
    ids = [uuid.UUID(p["id"]) for p in parts]
    assert {(await order_row(db, str(i)))["status"] for i in ids} == {"paying"}
    assert (
        await db.fetchval("SELECT count(*) FROM bff.payment_ledger WHERE order_id = ANY($1::uuid[])", ids)
        == 0
    )


async def test_a_cases_own_payment_racing_the_departments_leaves_one_live_order_per_fee(
    client, sandbox, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    for _ in range(3):
        bundle, fees = await bundle_with_fees(client, sandbox, who)
        first_case = bundle["members"][0]["case"]["id"]
        own, together = await asyncio.gather(
            client.post(f"/api/v1/cases/{first_case}/payments", headers=auth(who, key())),
            pay_department(client, who, bundle["id"], POLICE),
        )
        assert own.status_code == 201, own.text
        assert together.status_code in (201, 409), together.text
        live = await db.fetch(
            """
            SELECT fee_id, combine_id FROM bff.payment_orders
            WHERE fee_id = ANY($1::text[]) AND status NOT IN ('closed', 'failed')
            """,
            [f["fee_id"] for f in fees[:2]],
        )
        by_fee = {r["fee_id"]: r["combine_id"] for r in live}
        # Either may win (the scheduler decides); each outcome must be whole.
        if together.status_code == 201:
            # The combine won: the case's own route hands out the same sheet.
            assert len(live) == 2 and len(set(by_fee.values())) == 1
            assert own.json()["combineId"] == together.json()["id"]
            assert own.json()["jsapi"]["package"] == together.json()["jsapi"]["package"]
        else:
            # The case's order won: the department's payment waits for it, nothing else was written.
            assert together.json()["code"] in ("payment_open_elsewhere", "conflict")
            assert list(by_fee) == [fees[0]["fee_id"]] and by_fee[fees[0]["fee_id"]] is None
