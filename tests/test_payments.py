"""Payments against real PostgreSQL, Redis and the WeChat Pay / case system sandbox over HTTP:
the journey, the forged-notification matrix, concurrency, the reconciler, refunds, the bill."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from auth.audit import verify_chain
from tests.auth_helpers import login_resident
from tests.conftest import AppFactory
from tests.payment_helpers import (
    Relay,
    case_with_fee,
    create_payment,
    money_fields,
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
from tests.test_journey_helpers import WEBHOOK_SECRET, auth, deliver, key, signed


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
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
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
    who = await login_resident(client, sandbox, channel="app", level=3)
    case, _ = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    assert order["tradeType"] == "APP" and order["jsapi"] is None
    assert set(order["app"]) == {"appid", "partnerid", "prepayid", "package", "noncestr", "timestamp", "sign"}
    assert order["app"]["partnerid"] == "1900000109" and order["app"]["package"] == "Sign=WXPay"

    # The same resident at a hall kiosk: a Native QR for another case's fee; the first case's fee
    # already has an open App order, which the kiosk is told about rather than given a second one.
    kiosk = await login_resident(client, sandbox, channel="kiosk", resident=who["resident"], level=3)
    assert kiosk["person_id"] == who["person_id"]
    case2, _ = await case_with_fee(client, sandbox, db, who)
    for target, status in ((case2["case"]["id"], 201), (case["case"]["id"], 409)):
        path = f"/api/v1/cases/{target}/payments"
        at_kiosk = await client.post(path, headers=auth(kiosk, key(), **kiosk["kiosk"].headers("POST", path)))
        assert at_kiosk.status_code == status, at_kiosk.text
    native = (
        await client.post(
            f"/api/v1/cases/{case2['case']['id']}/payments",
            headers=auth(
                kiosk,
                key(),
                **kiosk["kiosk"].headers("POST", f"/api/v1/cases/{case2['case']['id']}/payments"),
            ),
        )
    ).json()
    assert native["tradeType"] == "NATIVE" and native["codeUrl"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert native["jsapi"] is None and native["app"] is None
    assert at_kiosk.json()["code"] == "payment_open_elsewhere"

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
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case = await apply(client, who, await bookable_item(db))
    none_due = await create_payment(client, who, case["case"]["id"])
    assert none_due.status_code == 409 and none_due.json()["code"] == "no_fee_due"
    other = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case2, _ = await case_with_fee(client, sandbox, db, who)
    stolen = await create_payment(client, other, case2["case"]["id"])
    assert stolen.status_code == 404 and stolen.json()["code"] == "case_not_found"
    order = (await create_payment(client, who, case2["case"]["id"])).json()
    peek = await client.get(f"/api/v1/payments/{order['id']}", headers=auth(other))
    assert peek.status_code == 404 and peek.json()["code"] == "payment_not_found"


async def _state(db: asyncpg.Connection, payment_id: str) -> tuple[Any, ...]:
    row = await order_row(db, payment_id)
    ledger = await db.fetchval(
        "SELECT count(*) FROM bff.payment_ledger WHERE order_id = $1::uuid", payment_id
    )
    outbox = await db.fetchval(
        "SELECT count(*) FROM bff.outbox WHERE topic = 'payment.changed' AND payload ->> 'paymentId' = $1",
        payment_id,
    )
    return (row["status"], row["trade_state"], row["transaction_id"], row["paid_fen"], ledger, outbox)


async def test_forged_tampered_replayed_and_mismatched_notifications_change_nothing_and_are_audited(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
    policy_reset: None,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case, _ = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    out_trade_no, pid = order["outTradeNo"], order["id"]
    # The platform has it paid, but its notification is held: everything below arrives first.
    await set_policy(sandbox, hold=True)
    nid = (await pay(sandbox, out_trade_no))["notification_id"]
    before = await _state(db, pid)
    assert before[0] == "paying" and before[4] == 0

    serial, platform = await platform_key(db)
    good = transaction(out_trade_no, 1550)
    cases: list[tuple[str, Any, str]] = []

    async def via_sandbox(what: str) -> int:
        response = await sandbox.post(f"/_control/wechatpay/notifications/{nid}/tamper", json={"what": what})
        return int(response.json()["status"])

    async def direct(body: bytes, headers: dict[str, str]) -> int:
        return (
            await client.post("/api/v1/payments/wechat/notify", content=body, headers=headers)
        ).status_code

    # Forged signature, tampered ciphertext (re-signed: only AEAD catches it), an unknown serial.
    cases.append(("forged signature", await via_sandbox("signature"), "rejected:bad_signature"))
    cases.append(("tampered ciphertext", await via_sandbox("ciphertext"), "rejected:decrypt_failed"))
    cases.append(("unknown serial", await via_sandbox("serial"), "rejected:unknown_serial"))
    # A replay held back 10 minutes (old timestamp, signed then).
    stale = await sandbox.post(f"/_control/wechatpay/notifications/{nid}/resend")
    cases.append(("old timestamp", stale.json()["status"], "rejected:stale_timestamp"))
    # Correctly signed by the platform key but wrong in content.
    for label, plaintext, reason in (
        (
            "wrong amount",
            transaction(out_trade_no, 1, amount={"total": 1, "payer_total": 1, "currency": "CNY"}),
            "rejected:mismatch:amount",
        ),
        ("wrong mchid", transaction(out_trade_no, 1550, mchid="1900000999"), "rejected:mismatch:mchid"),
        (
            "wrong appid",
            transaction(out_trade_no, 1550, appid="wx0000000000000bad"),
            "rejected:mismatch:appid",
        ),
        (
            "wrong currency",
            transaction(out_trade_no, 1550, amount={"total": 1550, "payer_total": 1550, "currency": "USD"}),
            "rejected:mismatch:currency",
        ),
        ("unknown out_trade_no", transaction("X" + out_trade_no[1:], 1550), "rejected:unknown_out_trade_no"),
    ):
        cases.append((label, await direct(*notification(plaintext, serial, platform)), reason))
    # A reused nonce: the first delivery with it (about nothing of ours) is refused; the same
    # nonce on an otherwise perfect notification is a replay.
    used = "n" + key()[:20]
    cases.append(
        (
            "first use of a nonce",
            await direct(
                *notification(transaction("Y" + out_trade_no[1:], 1550), serial, platform, nonce=used)
            ),
            "rejected:unknown_out_trade_no",
        )
    )
    cases.append(
        (
            "reused nonce",
            await direct(*notification(good, serial, platform, nonce=used)),
            "rejected:replayed_nonce",
        )
    )

    audit_before = await audit_count(db, "payment.notification", "rejected:%")
    assert audit_before >= len(cases)
    for label, status, reason in cases:
        assert 400 <= status < 500, (label, status)
        assert await audit_count(db, "payment.notification", reason + "%") >= 1, (label, reason)
    assert await _state(db, pid) == before, "a refused notification changed something"
    assert await verify_chain(db) is None  # the audit records are in the hash chain
    # Refusals are problem documents (WeChat only reads the status; our one renderer writes them).
    refused = await client.post(
        "/api/v1/payments/wechat/notify", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 401 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )

    # The real notification, released now, is applied: the order was never harmed.
    await sandbox.post("/_control/wechatpay/notifications/release", json={"order": "forward"})
    assert await wait_for(db, "SELECT status = 'paid' FROM bff.payment_orders WHERE id = $1::uuid", pid)
    after = await _state(db, pid)
    assert after[0] == "paid" and after[3] == 1550 and after[4] == 1
    # A replay of that real delivery (same nonce and signature) is refused and changes nothing.
    replay = await sandbox.post(f"/_control/wechatpay/notifications/{nid}/replay")
    assert 400 <= replay.json()["status"] < 500
    assert await _state(db, pid) == after


async def test_50_duplicate_notifications_and_20_concurrent_posts_make_one_order_one_payment(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
    policy_reset: None,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay, db_pool_max=20)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case, fee = await case_with_fee(client, sandbox, db, who)
    case_id = case["case"]["id"]

    first = await asyncio.gather(*(create_payment(client, who, case_id) for _ in range(20)))
    assert [r.status_code for r in first] == [201] * 20, [r.text for r in first if r.status_code != 201][:2]
    ids = {r.json()["id"] for r in first}
    assert len(ids) == 1, ids
    pid = ids.pop()
    out_trade_no = first[0].json()["outTradeNo"]
    assert await db.fetchval("SELECT count(*) FROM bff.payment_orders WHERE fee_id = $1", fee["fee_id"]) == 1

    await set_policy(sandbox, hold=True)
    nid = (await pay(sandbox, out_trade_no))["notification_id"]
    duplicated, posts = await asyncio.gather(
        sandbox.post(f"/_control/wechatpay/notifications/{nid}/duplicate", json={"copies": 50}, timeout=60),
        asyncio.gather(*(create_payment(client, who, case_id) for _ in range(20))),
    )
    statuses = duplicated.json()["statuses"]
    assert len(statuses) == 50 and all(s in (200, 204) for s in statuses), statuses
    assert {r.json()["id"] for r in posts} == {pid}
    assert await db.fetchval("SELECT count(*) FROM bff.payment_orders WHERE fee_id = $1", fee["fee_id"]) == 1
    assert await db.fetchval("SELECT count(*) FROM bff.payment_ledger WHERE order_id = $1::uuid", pid) == 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE action = 'payment.paid' AND object = $1",
            f"payment:{pid}",
        )
        == 1
    )
    assert (
        await db.fetchval("SELECT count(*) FROM bff.outbox WHERE dedup_key LIKE $1", f"payment:{pid}:paid:%")
        == 1
    )
    row = await order_row(db, pid)
    assert row["status"] == "paid" and row["paid_fen"] == 1550


async def test_a_dropped_notification_is_caught_by_the_reconciler(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
    policy_reset: None,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay, payment_check_after_s=0.0)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case, _ = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    await set_policy(sandbox, drop=True)
    await pay(sandbox, order["outTradeNo"])
    await asyncio.sleep(0.3)
    assert (await order_row(db, order["id"]))["status"] == "paying"  # nothing arrived
    await root_of(client).payments.reconcile()
    row = await order_row(db, order["id"])
    assert row["status"] == "paid" and row["trade_state"] == "SUCCESS"
    ledger = await db.fetch("SELECT via, amount_fen FROM bff.payment_ledger WHERE order_id = $1", row["id"])
    assert [(r["via"], r["amount_fen"]) for r in ledger] == [("reconcile", 1550)]
    await root_of(client).payments.reconcile()  # again: nothing more
    assert await db.fetchval("SELECT count(*) FROM bff.payment_ledger WHERE order_id = $1", row["id"]) == 1


async def test_an_order_that_is_not_paid_is_asked_about_with_backoff_and_closed_when_expired(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay, payment_check_after_s=20.0)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case, fee = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    waits = []
    for _ in range(3):  # each unanswered question waits twice as long as the one before
        await db.execute(
            "UPDATE bff.payment_orders SET next_check_at = now() WHERE id = $1::uuid", order["id"]
        )
        asked = datetime.now(UTC)
        await root_of(client).payments.reconcile()
        row = await order_row(db, order["id"])
        assert row["status"] == "paying"
        waits.append((row["next_check_at"] - asked).total_seconds())
    assert row["checks"] == 3
    assert 19 < waits[0] < 22 and 39 < waits[1] < 42 and 79 < waits[2] < 82, waits

    # time_expire passes (at the platform, and on our clock).
    expired = await sandbox.post(f"/_control/wechatpay/orders/{order['outTradeNo']}/expire", json={})
    assert expired.status_code == 200, expired.text
    await db.execute(
        "UPDATE bff.payment_orders SET time_expire = now() - interval '1 second', next_check_at = now() "
        "WHERE id = $1",
        row["id"],
    )
    await root_of(client).payments.reconcile()
    row = await order_row(db, order["id"])
    assert row["status"] == "closed" and row["trade_state"] == "CLOSED"
    held = (await sandbox.get("/_control/wechatpay/state")).json()
    platform = next(o for o in held["orders"] if o["out_trade_no"] == order["outTradeNo"])
    assert platform["trade_state"] == "CLOSED"
    assert await audit_count(db, "payment.closed") >= 1
    # The fee is still owed: a new order can be made for it.
    again = await create_payment(client, who, case["case"]["id"])
    assert again.status_code == 201 and again.json()["id"] != order["id"]
    assert again.json()["status"] == "paying" and again.json()["feeId"] == fee["fee_id"]


async def _paid_order(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, who: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    case, fee = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    await pay(sandbox, order["outTradeNo"])
    assert await wait_for(
        db, "SELECT status = 'paid' FROM bff.payment_orders WHERE id = $1::uuid", order["id"]
    )
    assert await root_of(client).payments.report_paid() >= 1
    return case, fee, order


async def test_refund_requested_by_the_case_system_retried_refunds_once_and_above_paid_is_refused(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay)
    payments = root_of(client).payments
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case, _fee, order = await _paid_order(client, sandbox, db, who)
    project_no = case["case"]["projectNo"]

    asked = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee-refund",
        json={"reason": "减免", "amount_fen": 500, "deliver": False},
    )
    assert asked.status_code == 201, asked.text
    event = asked.json()
    assert (await deliver(client, event)).status_code == 200
    assert (await deliver(client, event)).status_code == 200  # the webhook again: one refund
    refunds = await db.fetch("SELECT * FROM bff.payment_refunds WHERE order_id = $1::uuid", order["id"])
    assert [(r["status"], r["amount_fen"]) for r in refunds] == [("requested", 500)]
    assert (await order_row(db, order["id"]))["status"] == "refunding"

    assert await payments.submit_refunds() == 1
    # Our commit after the platform's answer is lost (a crash): the job sends it again.
    await db.execute("UPDATE bff.payment_refunds SET status = 'requested' WHERE id = $1", refunds[0]["id"])
    assert await payments.submit_refunds() == 1
    held = (await sandbox.get("/_control/wechatpay/state")).json()
    theirs = [r for r in held["refunds"] if r["out_trade_no"] == order["outTradeNo"]]
    assert [(r["refund"], r["status"]) for r in theirs] == [(500, "PROCESSING")], theirs
    assert theirs[0]["out_refund_no"] == refunds[0]["out_refund_no"]

    # The platform finishes it; its notification settles our refund and writes the ledger once.
    done = await sandbox.post(f"/_control/wechatpay/refunds/{theirs[0]['out_refund_no']}/success", json={})
    assert done.status_code == 200, done.text
    assert await wait_for(
        db, "SELECT status = 'success' FROM bff.payment_refunds WHERE id = $1", refunds[0]["id"]
    )
    row = await order_row(db, order["id"])
    assert row["status"] == "partially_refunded" and row["refunded_fen"] == 500 and row["paid_fen"] == 1550
    ledger = await db.fetch(
        "SELECT kind, amount_fen FROM bff.payment_ledger WHERE order_id = $1 ORDER BY seq", row["id"]
    )
    assert [(r["kind"], r["amount_fen"]) for r in ledger] == [("payment", 1550), ("refund", 500)]
    assert (
        await audit_count(
            db, "payment.refunded", f"amount_fen=500 out_refund_no={refunds[0]['out_refund_no']}%"
        )
        == 1
    )

    # A refund request above what is left (1550 - 500 = 1050) is refused by us before any call.
    over = msgspec.json.decode(msgspec.json.encode(event))
    over.update(
        event_id="EV" + key().upper(),
        case_seq=event["case_seq"] + 50,
        seq=event["seq"] + 100000,
        data={**event["data"], "amount_fen": 1051, "refund_no": "RQ" + key()[:12].upper()},
    )
    body, headers = signed(over, secret=WEBHOOK_SECRET)
    assert (await client.post("/api/v1/case-events", content=body, headers=headers)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM bff.payment_refunds WHERE order_id = $1", row["id"]) == 1
    assert await audit_count(db, "payment.refund_requested", "refused:exceeds_paid%") >= 1
    assert await payments.submit_refunds() == 0

    # The rest (1050) refunds the order fully.
    rest = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee-refund", json={"reason": "多缴", "deliver": False}
    )
    assert rest.status_code == 201 and rest.json()["data"]["amount_fen"] == 1050
    assert (await deliver(client, rest.json())).status_code == 200
    assert await payments.submit_refunds() == 1
    second = await db.fetchval(
        "SELECT out_refund_no FROM bff.payment_refunds WHERE order_id = $1 AND amount_fen = 1050", row["id"]
    )
    assert (await sandbox.post(f"/_control/wechatpay/refunds/{second}/success", json={})).status_code == 200
    assert await wait_for(db, "SELECT status = 'refunded' FROM bff.payment_orders WHERE id = $1", row["id"])
    got = (await client.get(f"/api/v1/payments/{order['id']}", headers=auth(who))).json()
    assert got["status"] == "refunded" and got["refundedFen"] == 1550
    assert [r["status"] for r in got["refunds"]] == ["success", "success"]
    detail = (await client.get(f"/api/v1/cases/{case['case']['id']}", headers=auth(who))).json()
    assert [t["kind"] for t in detail["timeline"]].count("refund_success") == 2
    bad = [
        (p, v)
        for p, v in money_fields(got) + money_fields(detail)
        if not isinstance(v, int) or isinstance(v, bool)
    ]
    assert bad == [], bad


async def test_the_daily_bill_matches_the_ledger_and_a_difference_is_a_metric_and_an_audit_record(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
    policy_reset: None,
) -> None:
    from prometheus_client import REGISTRY

    client = await payment_client(make_client, sandbox_url, relay)
    payments = root_of(client).payments
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    _, _, recorded = await _paid_order(client, sandbox, db, who)
    # A payment the platform has and we never heard of (notification dropped, no reconcile yet).
    case, _ = await case_with_fee(client, sandbox, db, who)
    lost = (await create_payment(client, who, case["case"]["id"])).json()
    await set_policy(sandbox, drop=True)
    await pay(sandbox, lost["outTradeNo"])

    def metric() -> float:
        return (
            REGISTRY.get_sample_value("sx_payment_bill_differences_total", {"kind": "missing_in_ledger"})
            or 0.0
        )

    before = metric()
    today = (datetime.now(UTC) + timedelta(hours=8)).date()
    await payments.check_bill(today)
    check = await db.fetchrow("SELECT * FROM bff.payment_bill_checks WHERE bill_date = $1", today)
    detail = check["detail"]
    differences = {d["ref"]: d for d in (msgspec.json.decode(detail) if isinstance(detail, str) else detail)}
    assert recorded["outTradeNo"] not in differences  # what we recorded matches the bill
    assert differences[lost["outTradeNo"]]["kind"] == "missing_in_ledger"
    assert (
        differences[lost["outTradeNo"]]["billFen"] == 1550
        and differences[lost["outTradeNo"]]["ledgerFen"] is None
    )
    assert metric() > before
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE action = 'payment.bill_difference' AND object = $1",
            f"payment:{lost['outTradeNo']}",
        )
        >= 1
    )
    # Never silently fixed: the order is as it was until the reconciler asks the platform.
    assert (await order_row(db, lost["id"]))["status"] == "paying"


async def test_coming_back_from_the_payment_sheet_asks_the_platform_before_any_notification(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
    policy_reset: None,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case, _ = await case_with_fee(client, sandbox, db, who)
    order = (await create_payment(client, who, case["case"]["id"])).json()
    # The client says "success" but nothing was paid: the platform says NOTPAY, and so do we.
    before = (await client.get(f"/api/v1/payments/{order['id']}", headers=auth(who))).json()
    assert before["status"] == "paying" and before["tradeState"] == "NOTPAY"
    await set_policy(sandbox, hold=True)  # paid, the notification not here yet
    await pay(sandbox, order["outTradeNo"])
    after = (await client.get(f"/api/v1/payments/{order['id']}", headers=auth(who))).json()
    assert after["status"] == "paid" and after["tradeState"] == "SUCCESS" and after["paidFen"] == 1550
    ledger = await db.fetch("SELECT via FROM bff.payment_ledger WHERE order_id = $1::uuid", order["id"])
    assert [r["via"] for r in ledger] == ["query"]
    # The notification arriving afterwards is acknowledged and changes nothing.
    await sandbox.post("/_control/wechatpay/notifications/release", json={"order": "forward"})
    assert await wait_for(
        db,
        "SELECT 1 FROM sandbox.wechatpay_notifications WHERE out_trade_no = $1 AND state = 'delivered'",
        order["outTradeNo"],
    )
    assert (
        await db.fetchval("SELECT count(*) FROM bff.payment_ledger WHERE order_id = $1::uuid", order["id"])
        == 1
    )


async def test_time_expire_never_passes_the_fees_payable_by_day_and_an_overdue_fee_is_refused(
    make_client: AppFactory,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    relay: Relay,
) -> None:
    client = await payment_client(make_client, sandbox_url, relay, payment_expire_s=7 * 86400)
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    today = (datetime.now(UTC) + timedelta(hours=8)).date()
    case, _ = await case_with_fee(client, sandbox, db, who, payable_by=today + timedelta(days=1))
    order = (await create_payment(client, who, case["case"]["id"])).json()
    assert order["timeExpire"] == f"{today + timedelta(days=1)}T23:59:59+08:00"
    late, _ = await case_with_fee(client, sandbox, db, who, payable_by=today - timedelta(days=1))
    refused = await create_payment(client, who, late["case"]["id"])
    assert refused.status_code == 409 and refused.json()["code"] == "fee_overdue"
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.payment_orders WHERE case_id = $1::uuid", late["case"]["id"]
        )
        == 0
    )
