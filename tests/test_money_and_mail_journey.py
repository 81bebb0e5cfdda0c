"""One resident, one case, from application to the result in hand: apply → accepted → fee issued →
order (the JSAPI paySign verifies with our merchant key) → paid in WeChat → notification → paid on the
timeline → concluded → mailing requested → the courier's events → delivered. Real PostgreSQL, Redis
and the sandbox's case system, WeChat Pay and courier over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest

from tests.auth_helpers import login_resident
from tests.delivery_helpers import add_address, delivery_urls, ensure_mirror, mailable_item
from tests.payment_helpers import Relay, create_payment, pay, payment_client, verify_pay_sign, wait_for
from tests.test_journey_helpers import advance, apply, auth, deliver, key


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    r = await Relay().start()
    yield r
    await r.stop()


async def test_apply_pay_conclude_mail_and_deliver(
    make_client, services, sandbox_url, sandbox, db, relay
) -> None:
    await ensure_mirror(services, sandbox_url)
    client = await payment_client(make_client, sandbox_url, relay, courier_url=f"{sandbox_url}/courier")
    assert delivery_urls(sandbox_url)["courier_url"] == f"{sandbox_url}/courier"
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    case = await apply(client, who, await mailable_item(db))
    case_id, project_no = case["case"]["id"], case["case"]["projectNo"]
    assert (await deliver(client, await advance(sandbox, project_no, "accept"))).status_code == 200

    # The department issues the fee; the BFF shows what is owed, and takes the amount only from there.
    issued = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee",
        json={
            "lines": [{"name": "工本费", "amount_fen": 1000}],
            "payable_by": (date.today() + timedelta(days=7)).isoformat(),
            "deliver": False,
        },
    )
    assert issued.status_code == 201, issued.text
    assert (await deliver(client, issued.json()["event"])).status_code == 200
    owed = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()["fee"]
    assert owed["owedFen"] == 1000

    order = (await create_payment(client, who, case_id)).json()
    assert order["amountFen"] == 1000 and verify_pay_sign(order["jsapi"])
    await pay(sandbox, order["outTradeNo"])
    assert await wait_for(
        db, "SELECT status = 'paid' FROM bff.payment_orders WHERE id = $1::uuid", order["id"]
    )
    root = client.app.state.root  # type: ignore[attr-defined]
    # Told to the case system once (other tests of the session may leave paid orders of their own).
    assert await root.payments.report_paid() >= 1
    assert not await db.fetchval(
        "SELECT report_pending FROM bff.payment_orders WHERE id = $1::uuid", order["id"]
    )

    # The department concludes with a result to mail; the resident asks for it by post.
    for action, fields in (
        ("step", {"step": "承办", "opinion": "材料齐全"}),
        ("conclude", {"result_code": "0"}),
    ):
        assert (
            await deliver(client, await advance(sandbox, project_no, action, **fields))
        ).status_code == 200
    address = await add_address(client, who)
    mailed = await client.post(
        f"/api/v1/cases/{case_id}/delivery", json={"addressId": address["id"]}, headers=auth(who, key())
    )
    assert mailed.status_code == 201, mailed.text
    shipment = mailed.json()
    waybill = shipment["waybillNo"]
    assert waybill
    # The courier moves the parcel; its changes feed (the reconciler job) brings each step in.
    line = ["picked_up", "in_transit", "out_for_delivery", "delivered"]
    for expected in line:
        moved = await sandbox.post(f"/_control/courier/shipments/{waybill}/advance", json={})
        assert moved.status_code == 201 and moved.json()["status"] == expected, moved.text
        await root.delivery.reconcile()

    detail = (await client.get(f"/api/v1/cases/{case_id}", headers=auth(who))).json()
    kinds = [entry["kind"] for entry in detail["timeline"]]
    assert detail["case"]["status"] == "delivered", kinds
    for expected in ("accepted", "fee_issued", "payment_paid", "fee_paid", "concluded"):
        assert expected in kinds, (expected, kinds)
    assert kinds.index("fee_issued") < kinds.index("payment_paid") < kinds.index("concluded")
    assert detail["fee"]["owedFen"] == 0
    tracked = (await client.get(f"/api/v1/deliveries/{shipment['id']}", headers=auth(who))).json()
    assert tracked["status"] == "delivered"
    assert [e["status"] for e in tracked["events"]] == ["created", *line]
