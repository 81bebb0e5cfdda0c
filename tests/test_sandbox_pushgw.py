"""The sandbox push gateway: signed sends, de-duplication by request_id, the real error codes and
statuses, and signed delivery receipts retried against a failing or slow receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.callback_receiver import Receiver

APP_KEY, SECRET = "sandbox-pushgw-app", "sandbox-pushgw-secret"


def signature(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def push(
    sandbox: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    secret: str = SECRET,
    app_key: str = APP_KEY,
    skew: int = 0,
) -> httpx.Response:
    raw = json.dumps(body, ensure_ascii=False).encode()
    timestamp = str(int(time.time()) + skew)
    headers = {
        "Content-Type": "application/json",
        "X-Pushgw-App-Key": app_key,
        "X-Pushgw-Timestamp": timestamp,
        "X-Pushgw-Signature": signature(timestamp, raw, secret),
    }
    return await sandbox.post("/pushgw/v1/messages", content=raw, headers=headers)


async def install(sandbox: httpx.AsyncClient, platform: str = "android", **extra: str) -> str:
    device = {"platform": platform, "personRef": "P-" + uuid.uuid4().hex[:8], **extra}
    answer = await sandbox.post("/_control/pushgw/devices", json={"devices": [device]})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["devices"][0]["token"])


def message(token: str, callback_url: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": "n-" + uuid.uuid4().hex,
        "token": token,
        "platform": "android",
        "title": "材料补正提醒",
        "body": "您申请的户口迁移登记需要补正材料",
        "data": {"deep_link": "sanxiang://cases/42"},
        "callback_url": callback_url,
    }
    body.update(extra)
    return body


async def accepted(sandbox: httpx.AsyncClient, **query: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/pushgw/messages", params=query)).json())


async def settled(sandbox: httpx.AsyncClient, request_id: str, receipts: int = 1) -> dict[str, Any]:
    """The message once delivered or failed and `receipts` attempts recorded."""
    deadline = time.monotonic() + 10
    while True:
        [row] = await accepted(sandbox, requestId=request_id)
        if row["status"] != "accepted" and len(row["receipts"]) >= receipts:
            return row
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = await Receiver().start()
    try:
        yield hook
    finally:
        await hook.stop()


async def test_a_send_is_accepted_delivered_and_receipted_with_a_signature(sandbox, receiver) -> None:
    token = await install(sandbox)
    body = message(token, receiver.url)
    answer = await push(sandbox, body)
    assert answer.status_code == 200, answer.text
    message_id = answer.json()["message_id"]
    [seen] = await receiver.wait_for(1)
    assert seen.headers["X-Pushgw-Signature"] == signature(seen.headers["X-Pushgw-Timestamp"], seen.body)
    receipt = json.loads(seen.body)
    assert receipt["message_id"] == message_id and receipt["request_id"] == body["request_id"]
    assert receipt["status"] == "delivered" and receipt["reason"] is None and receipt["at"]
    row = await settled(sandbox, body["request_id"])
    assert (row["status"], row["title"], row["data"]) == ("delivered", "材料补正提醒", body["data"])
    assert row["receipts"] == [{"attempt": 1, "outcome": "http_200"}]


async def test_a_repeated_request_id_answers_the_first_result_and_sends_once(sandbox, receiver) -> None:
    token = await install(sandbox)
    body = message(token, receiver.url)
    first = (await push(sandbox, body)).json()["message_id"]
    again = await asyncio.gather(*[push(sandbox, {**body, "title": "换了标题"}) for _ in range(6)])
    assert {a.json()["message_id"] for a in again} == {first}
    rows = await accepted(sandbox, token=token)
    assert [(r["messageId"], r["title"]) for r in rows] == [(first, "材料补正提醒")]
    await settled(sandbox, body["request_id"])
    await asyncio.sleep(0.3)  # time for a second receipt, were there one
    assert len(receiver.seen) == 1
    log = (await sandbox.get("/_control/pushgw/requests", params={"requestId": body["request_id"]})).json()
    assert [r["duplicate"] for r in log] == [False] + [True] * 6


async def test_requests_not_from_the_app_are_unauthenticated(sandbox) -> None:
    token = await install(sandbox)
    for kwargs in ({"secret": "wrong"}, {"app_key": "other-app"}, {"skew": -600}):
        answer = await push(sandbox, message(token), **kwargs)
        assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHENTICATED", kwargs
    assert await accepted(sandbox, token=token) == []


async def test_token_and_payload_errors_have_the_real_codes(sandbox) -> None:
    token = await install(sandbox)
    ios = await install(sandbox, "ios")
    cases = [
        (message("short"), 400, "INVALID_TOKEN"),
        (message(token, platform="ios"), 400, "INVALID_TOKEN"),  # an android token sent as ios
        (message(ios), 400, "INVALID_TOKEN"),  # an ios token sent as android
        (message("A" * 40), 404, "UNREGISTERED"),  # well formed, never installed
        (message(token, body="长" * 1500), 413, "PAYLOAD_TOO_LARGE"),
        ({**message(token), "priority": "high"}, 400, "INVALID_ARGUMENT"),
        (message(token, title=""), 400, "INVALID_ARGUMENT"),
    ]
    for body, status, code in cases:
        answer = await push(sandbox, body)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
        assert answer.json()["message"]
    assert (await push(sandbox, message(ios, platform="ios"))).status_code == 200


async def test_an_uninstalled_token_is_unregistered_from_the_next_send(sandbox) -> None:
    token = await install(sandbox, appVersion="3.2.0")
    assert (await push(sandbox, message(token))).status_code == 200
    assert (await sandbox.delete(f"/_control/pushgw/devices/{token}")).status_code == 200
    answer = await push(sandbox, message(token))
    assert (answer.status_code, answer.json()["code"]) == (404, "UNREGISTERED")
    await install(sandbox, token=token)  # reinstalled: the same token is valid again
    assert (await push(sandbox, message(token))).status_code == 200


async def test_transient_refusals_carry_retry_after_and_a_retry_is_judged_afresh(sandbox) -> None:
    token = await install(sandbox)
    body = message(token)
    for code in ("QUOTA_EXCEEDED", "INTERNAL", "UNAVAILABLE"):
        assert (await sandbox.post("/_control/pushgw/failures", json={"code": code})).status_code == 200
    answers = [await push(sandbox, body) for _ in range(3)]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (429, "QUOTA_EXCEEDED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ]
    assert [a.headers.get("retry-after") for a in answers] == ["1", None, "1"]
    assert await accepted(sandbox, token=token) == []
    assert (await push(sandbox, body)).status_code == 200
    assert len(await accepted(sandbox, token=token)) == 1


async def test_the_per_second_quota(sandbox) -> None:
    token = await install(sandbox)
    await sandbox.put("/_control/pushgw/config", json={"perSecond": 2})
    try:
        answers = [await push(sandbox, message(token)) for _ in range(3)]
    finally:
        await sandbox.put("/_control/pushgw/config", json={})
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "1"


async def test_receipts_are_retried_past_an_error_and_a_slow_receiver(sandbox, receiver) -> None:
    token = await install(sandbox)
    body = message(token, receiver.url)
    receiver.plan.extend(
        [(500, 0.0, None), (200, 3.0, None)]
    )  # the second answer comes after the 2 s timeout
    assert (await push(sandbox, body)).status_code == 200
    row = await settled(sandbox, body["request_id"], receipts=3)
    outcomes = [r["outcome"] for r in row["receipts"]]
    assert outcomes[0] == "http_500" and not outcomes[1].startswith("http_") and outcomes[2] == "http_200"
    assert len(receiver.seen) == 3
    assert len({s.body for s in receiver.seen}) == 1  # the same receipt each time, freshly signed
    for seen in receiver.seen:
        assert seen.headers["X-Pushgw-Signature"] == signature(seen.headers["X-Pushgw-Timestamp"], seen.body)


async def test_failed_deliveries_and_dropped_receipts(sandbox, receiver) -> None:
    token = await install(sandbox)
    await sandbox.post("/_control/pushgw/delivery-failures", json={"reason": "DEVICE_OFFLINE_TTL_EXPIRED"})
    failing = message(token, receiver.url)
    await push(sandbox, failing)
    row = await settled(sandbox, failing["request_id"])
    assert (row["status"], row["reason"]) == ("failed", "DEVICE_OFFLINE_TTL_EXPIRED")
    [seen] = await receiver.wait_for(1)
    assert json.loads(seen.body)["status"] == "failed"

    await sandbox.post("/_control/pushgw/receipt-drops", json={"count": 1})
    dropped = message(token, receiver.url)
    await push(sandbox, dropped)
    row = await settled(sandbox, dropped["request_id"])
    assert row["status"] == "delivered" and row["receipts"] == [{"attempt": 0, "outcome": "dropped"}]
    await asyncio.sleep(0.3)
    assert len(receiver.seen) == 1


async def test_a_token_unregistered_before_delivery_fails_the_delivery(sandbox, receiver) -> None:
    token = await install(sandbox)
    await sandbox.put("/_control/pushgw/config", json={"deliveryDelayMs": 400})
    try:
        body = message(token, receiver.url)
        assert (await push(sandbox, body)).status_code == 200
        await sandbox.delete(f"/_control/pushgw/devices/{token}")
        row = await settled(sandbox, body["request_id"])
    finally:
        await sandbox.put("/_control/pushgw/config", json={})
    assert (row["status"], row["reason"]) == ("failed", "UNREGISTERED")
    [seen] = await receiver.wait_for(1)
    assert json.loads(seen.body)["reason"] == "UNREGISTERED"


async def test_faults_apply_and_reset_forgets_everything(sandbox) -> None:
    token = await install(sandbox)
    await sandbox.put("/_control/faults/pushgw", json={"errorRate": 1.0, "errorKind": "500"})
    assert (await push(sandbox, message(token))).status_code == 500
    await sandbox.delete("/_control/faults/pushgw")
    assert (await push(sandbox, message(token))).status_code == 200
    await sandbox.post("/_control/pushgw/failures", json={"code": "INTERNAL", "count": 3})
    assert (await sandbox.delete("/_control/pushgw")).status_code == 204
    assert await accepted(sandbox) == []
    assert (await push(sandbox, message(token))).json()["code"] == "UNREGISTERED"
