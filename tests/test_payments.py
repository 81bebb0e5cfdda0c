"""Payments against real PostgreSQL, Redis and the WeChat Pay / case system sandbox over HTTP:
the journey, the forged-notification matrix, concurrency, the reconciler, refunds, the bill."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.auth_helpers import login_resident
from tests.conftest import AppFactory
from tests.payment_helpers import (
    Relay,
    case_with_fee,
    create_payment,
    money_fields,
    pay,
    payment_client,
    set_policy,
    verify_pay_sign,
    wait_for,
)
from tests.test_journey_helpers import auth, key


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = await Relay().start()
    yield r
    await r.stop()


@pytest.fixture
async def policy_reset(sandbox: httpx.AsyncClient) -> AsyncIterator[None]:
    yield
    await set_policy(sandbox)


def root_of(client: httpx.AsyncClient) -> Any:
    return client.app.state.root  # type: ignore[attr-defined]


async def audit_count(db: asyncpg.Connection, action: str, result_like: str = "%") -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE action = $1 AND result LIKE $2", action, result_like
        )
    )


async def test_journey_fee_order_paysign_pay_notification_paid_on_the_timeline(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay)
    who = await login_resident(client, sandbox, channel="miniprogram", level=2)
    case, fee = await case_with_fee(client, sandbox, db, who)
    case_id = case["case"]["id"]

    # What is owed and how to pay it, from the case system's fee only.
    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    assert detail["fee"]["owedFen"] == 1550 and detail["fee"]["totalFen"] == 1550
    assert detail["fee"]["payOnline"] == f"/api/v1/cases/{case_id}/payments"
    assert detail["fee"]["paymentCode"] == fee["payment_code"]

    created = await create_payment(client, who, case_id)
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    order = created.json()
    assert order["status"] == "paying" and order["amountFen"] == 1550 and order["tradeType"] == "JSAPI"
    assert len(order["outTradeNo"]) <= 32
    jsapi = order["jsapi"]
    assert set(jsapi) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert jsapi["package"].startswith("prepay_id=") and jsapi["signType"] == "RSA"
    assert verify_pay_sign(jsapi), "paySign does not verify with the merchant's public key"
    tampered = {**jsapi, "package": jsapi["package"] + "x"}
    assert not verify_pay_sign(tampered)

    # The same case again (another key) returns the open order, not a second one.
    again = await create_payment(client, who, case_id)
    assert again.status_code == 201 and again.json()["id"] == order["id"]

    # The resident pays in WeChat; the platform's notification (over HTTP, via the relay) records it.
    await pay(sandbox, order["outTradeNo"])
    paid = await wait_for(
        db, "SELECT status = 'paid' FROM bff.payment_orders WHERE id = $1::uuid", order["id"]
    )
    assert paid, "the notification did not record the payment"
    assert 204 in relay.statuses
    ledger = await db.fetch("SELECT * FROM bff.payment_ledger WHERE out_trade_no = $1", order["outTradeNo"])
    assert [(r["kind"], r["amount_fen"], r["via"]) for r in ledger] == [("payment", 1550, "notify")]
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.outbox WHERE topic = 'payment.changed' AND person_id = $1",
            who["person_id"],
        )
        >= 1
    )

    # The case system is told once (a job, from the pending flag) and answers with the receipt.
    assert await root_of(client).payments.report_paid() >= 1
    assert await root_of(client).payments.report_paid() == 0
    sandbox_fee = (await sandbox.get(f"/cases/fees/{fee['fee_id']}")).json()
    assert sandbox_fee["status"] == "paid" and sandbox_fee["paid"]["out_trade_no"] == order["outTradeNo"]

    got = await client.get(f"/api/v1/payments/{order['id']}", headers=auth(who))
    assert got.status_code == 200 and got.json()["status"] == "paid" and got.json()["tradeState"] == "SUCCESS"
    assert got.headers["cache-control"] == "no-store"

    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    kinds = [t["kind"] for t in detail["timeline"]]
    for expected in (
        "accepted",
        "fee_issued",
        "payment_created",
        "payment_paid",
        "fee_paid",
        "receipt_issued",
    ):
        assert expected in kinds, (expected, kinds)
    assert kinds.index("fee_issued") < kinds.index("payment_created") < kinds.index("payment_paid")
    assert kinds.index("payment_paid") < kinds.index("receipt_issued")
    assert [t["at"] for t in detail["timeline"]] == sorted(t["at"] for t in detail["timeline"])
    assert detail["fee"]["owedFen"] == 0 and detail["fee"]["paymentStatus"] == "paid"
    assert detail["fee"]["payOnline"] is None

    # Money is an integer (fen) in every response here.
    for doc in (order, got.json(), detail):
        fields = money_fields(doc)
        assert fields
        bad = [
            (p, v)
            for p, v in fields
            if not (isinstance(v, int) and not isinstance(v, bool)) and v is not None
        ]
        assert bad == [], bad


async def test_app_gets_app_params_and_kiosk_gets_a_native_code_url(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay)
    who = await login_resident(client, sandbox, channel="app", level=2)
    case, _ = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    assert order["tradeType"] == "APP" and order["jsapi"] is None
    assert set(order["app"]) == {"appid", "partnerid", "prepayid", "package", "noncestr", "timestamp", "sign"}
    assert order["app"]["partnerid"] == "1900000109" and order["app"]["package"] == "Sign=WXPay"

    low = await login_resident(client, sandbox, channel="app", level=1)
    refused = await client.post(f"/api/v1/cases/{case['case']['id']}/payments", headers=auth(low, key()))
    assert refused.status_code == 403 and refused.json()["code"] == "step_up_required"


async def test_no_fee_means_no_order_and_another_residents_case_is_a_404(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
) -> None:
    from tests.test_journey_helpers import apply, bookable_item

    client = await payment_client(make_client, sandbox_url, relay)
    who = await login_resident(client, sandbox, channel="miniprogram", level=2)
    case = await apply(client, who, await bookable_item(db))
    none_due = await create_payment(client, who, case["case"]["id"])
    assert none_due.status_code == 409 and none_due.json()["code"] == "no_fee_due"
    other = await login_resident(client, sandbox, channel="miniprogram", level=2)
    case2, _ = await case_with_fee(client, sandbox, db, who)
    stolen = await create_payment(client, other, case2["case"]["id"])
    assert stolen.status_code == 404 and stolen.json()["code"] == "case_not_found"
    order = (await create_payment(client, who, case2["case"]["id"])).json()
    peek = await client.get(f"/api/v1/payments/{order['id']}", headers=auth(other))
    assert peek.status_code == 404 and peek.json()["code"] == "payment_not_found"
