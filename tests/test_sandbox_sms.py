"""The sandbox SMS gateway (Aliyun SendSms style): signed sends, the registered signature and
templates, the rendered text and its segments, de-duplication by out_id, the per-phone frequency
limits, every isv/isp code, and signed SmsReport callbacks retried until acknowledged."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.callback_receiver import Receiver

KEY, SECRET = "sandbox-sms-key", "sandbox-sms-secret"
ACK = {"code": 0, "msg": "成功"}


def signature(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def new_phone() -> str:
    return f"139{random.randrange(10**8):08d}"


def sms(phone: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "phone": phone,
        "sign_name": "三湘政务",
        "template_code": "SMS_460100001",
        "template_param": json.dumps(
            {"item": "户口迁移登记", "caseNo": "430100202612010001", "deadline": "12月8日"},
            ensure_ascii=False,
        ),
        "out_id": "n-" + uuid.uuid4().hex,
    }
    body.update(extra)
    return body


async def send(
    sandbox: httpx.AsyncClient, body: dict[str, Any], *, key: str = KEY, secret: str = SECRET, skew: int = 0
) -> httpx.Response:
    raw = json.dumps(body, ensure_ascii=False).encode()
    timestamp = str(int(time.time()) + skew)
    headers = {
        "Content-Type": "application/json",
        "X-Sms-AccessKeyId": key,
        "X-Sms-Timestamp": timestamp,
        "X-Sms-Signature": signature(timestamp, raw, secret),
    }
    return await sandbox.post("/sms/v1/send", content=raw, headers=headers)


async def code_of(sandbox: httpx.AsyncClient, body: dict[str, Any]) -> str:
    answer = await send(sandbox, body)
    assert answer.status_code == 200  # Aliyun answers its business codes with HTTP 200
    assert answer.json()["RequestId"]
    return str(answer.json()["Code"])


async def sent(sandbox: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/sms/messages", params={"phone": phone})).json())


async def configure(sandbox: httpx.AsyncClient, **config: Any) -> None:
    assert (await sandbox.put("/_control/sms/config", json=config)).status_code == 200


async def reported(sandbox: httpx.AsyncClient, phone: str, attempts: int = 1) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        [row] = await sent(sandbox, phone)
        if row["status"] != "sent" and len(row["reports"]) >= attempts:
            return row
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.05)


@pytest.fixture
async def receiver(sandbox) -> AsyncIterator[Receiver]:
    hook = await Receiver(ok_body=ACK).start()
    await configure(sandbox, reportUrl=hook.url)
    try:
        yield hook
    finally:
        await configure(sandbox)
        await hook.stop()


async def test_a_send_is_rendered_recorded_and_reported_signed(sandbox, receiver) -> None:
    phone = new_phone()
    body = sms(phone)
    answer = await send(sandbox, body)
    assert answer.status_code == 200
    result = answer.json()
    assert result["Code"] == "OK" and re.fullmatch(r"\d{18}\^0", result["BizId"]) and result["RequestId"]
    [message] = await sent(sandbox, phone)
    assert message["text"] == (
        "【三湘政务】您申请的户口迁移登记（办件编号430100202612010001）需要补正材料，请于12月8日前登录三湘政务小程序处理。"
    )
    assert message["segments"] == 1 and message["outId"] == body["out_id"]
    [seen] = await receiver.wait_for(1)
    assert seen.headers["X-Sms-Signature"] == signature(seen.headers["X-Sms-Timestamp"], seen.body)
    [report] = json.loads(seen.body)
    assert report["biz_id"] == result["BizId"] and report["out_id"] == body["out_id"]
    assert report["phone_number"] == phone
    assert (report["success"], report["err_code"], report["sms_size"]) == (True, "DELIVERED", "1")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", report["send_time"])
    row = await reported(sandbox, phone)
    assert row["status"] == "delivered" and row["reports"] == [{"attempt": 1, "outcome": "http_200"}]


async def test_a_long_text_is_sent_as_67_character_segments(sandbox) -> None:
    phone = new_phone()
    item = "湖南省长沙市岳麓区不动产登记中心国有建设用地使用权及房屋所有权首次登记事项"[:35]
    hall = "长沙市岳麓区政务服务中心二楼不动产登记综合受理窗口第三号至第八号窗口区域办理点"[:35]
    params = {"item": item, "time": "2026年12月2日上午09:30至10:00", "hall": hall}
    body = sms(phone, template_code="SMS_460100004", template_param=json.dumps(params, ensure_ascii=False))
    assert await code_of(sandbox, body) == "OK"
    [message] = await sent(sandbox, phone)
    expected = (
        f"【三湘政务】温馨提醒：您预约的{item}将于明天2026年12月2日上午09:30至10:00在{hall}办理，"
        "请按时到场；如需取消请提前在小程序中操作。"
    )
    assert message["text"] == expected
    # 137 characters: two 70-character messages would hold it, but long texts go in 67-character parts.
    assert len(expected) == 137 and message["segments"] == 3


async def test_a_repeated_out_id_answers_the_first_biz_id_and_sends_once(sandbox) -> None:
    phone = new_phone()
    body = sms(phone)
    first = (await send(sandbox, body)).json()["BizId"]
    again = await asyncio.gather(*[send(sandbox, body) for _ in range(5)])
    assert {(a.json()["Code"], a.json()["BizId"]) for a in again} == {("OK", first)}
    assert len(await sent(sandbox, phone)) == 1
    log = (await sandbox.get("/_control/sms/requests", params={"outId": body["out_id"]})).json()
    assert [r["duplicate"] for r in log] == [False] + [True] * 5


async def test_requests_not_from_the_account_are_refused(sandbox) -> None:
    phone = new_phone()
    for kwargs, status, code in [
        ({"key": "other"}, 404, "InvalidAccessKeyId.NotFound"),
        ({"secret": "wrong"}, 400, "SignatureDoesNotMatch"),
        ({"skew": 900}, 400, "InvalidTimeStamp.Expired"),
    ]:
        answer = await send(sandbox, sms(phone), **kwargs)
        assert (answer.status_code, answer.json()["Code"]) == (status, code)
    assert await sent(sandbox, phone) == []


async def test_each_business_code(sandbox) -> None:
    phone = new_phone()
    missing = json.dumps({"item": "户口迁移登记", "caseNo": "430100202612010001"}, ensure_ascii=False)
    too_long = json.dumps({"item": "长" * 36, "caseNo": "1", "deadline": "明天"}, ensure_ascii=False)
    cases = [
        (sms("1380013800"), "isv.MOBILE_NUMBER_ILLEGAL"),
        (sms("12012345678"), "isv.MOBILE_NUMBER_ILLEGAL"),
        (sms(phone, sign_name="三湘政务服务"), "isv.SMS_SIGNATURE_ILLEGAL"),
        (sms(phone, template_code="SMS_000000001"), "isv.SMS_TEMPLATE_ILLEGAL"),
        (sms(phone, template_param=missing), "isv.TEMPLATE_MISSING_PARAMETERS"),
        (sms(phone, template_param="{not json"), "isv.INVALID_JSON_PARAM"),
        (sms(phone, template_param=too_long), "isv.PARAM_LENGTH_LIMIT"),
        ({**sms(phone), "extend": "1"}, "isv.INVALID_PARAMETERS"),
    ]
    for body, code in cases:
        assert await code_of(sandbox, body) == code, body
    await configure(sandbox, balance=0)
    try:
        assert await code_of(sandbox, sms(phone)) == "isv.AMOUNT_NOT_ENOUGH"
    finally:
        await configure(sandbox)
    assert await sent(sandbox, phone) == []


async def test_a_system_error_is_transient_and_the_retry_is_judged_afresh(sandbox) -> None:
    phone = new_phone()
    body = sms("+86" + phone)
    await sandbox.post("/_control/sms/failures", json={"code": "isp.SYSTEM_ERROR", "count": 2})
    assert [await code_of(sandbox, body) for _ in range(3)] == ["isp.SYSTEM_ERROR", "isp.SYSTEM_ERROR", "OK"]
    [message] = await sent(sandbox, phone)  # +86 and the bare number are one phone
    assert message["outId"] == body["out_id"]


async def test_per_phone_frequency_limits_and_their_reset(sandbox) -> None:
    phone = new_phone()
    assert await code_of(sandbox, sms(phone)) == "OK"
    answer = (await send(sandbox, sms(phone))).json()
    assert (answer["Code"], answer["Message"]) == ("isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
    assert (await sandbox.delete(f"/_control/sms/limits/{phone}")).status_code == 200
    assert await code_of(sandbox, sms(phone)) == "OK"
    try:
        await configure(sandbox, perMinute=100)
        codes = [await code_of(sandbox, sms(phone)) for _ in range(5)]
        assert codes == ["OK"] * 4 + ["isv.BUSINESS_LIMIT_CONTROL"]  # 5 an hour, one sent already
        await configure(sandbox, perMinute=100, perHour=100)
        codes = [await code_of(sandbox, sms(phone)) for _ in range(6)]
        assert codes == ["OK"] * 5 + ["isv.BUSINESS_LIMIT_CONTROL"]  # 10 a day
        assert (await send(sandbox, sms(phone))).json()["Message"] == "触发天级流控Permits:10"
        other = new_phone()
        assert await code_of(sandbox, sms(other)) == "OK"  # limits are per phone
    finally:
        await configure(sandbox)
    assert len(await sent(sandbox, phone)) == 11  # one before the reset, ten after


async def test_concurrent_sends_cannot_race_past_the_minute_limit(sandbox) -> None:
    phone = new_phone()
    codes = await asyncio.gather(*[code_of(sandbox, sms(phone)) for _ in range(6)])
    assert sorted(codes) == ["OK"] + ["isv.BUSINESS_LIMIT_CONTROL"] * 5
    assert len(await sent(sandbox, phone)) == 1


async def test_undelivered_reports(sandbox, receiver) -> None:
    phone = new_phone()
    await sandbox.post("/_control/sms/undelivered", json={"errCode": "MK:100D"})
    assert await code_of(sandbox, sms(phone)) == "OK"
    row = await reported(sandbox, phone)
    assert (row["status"], row["errCode"]) == ("undelivered", "MK:100D")
    [seen] = await receiver.wait_for(1)
    [report] = json.loads(seen.body)
    assert (report["success"], report["err_code"]) == (False, "MK:100D")


async def test_reports_are_retried_until_acknowledged(sandbox, receiver) -> None:
    phone = new_phone()
    receiver.plan.extend([(200, 0.0, {"code": 1, "msg": "busy"}), (500, 0.0, None)])
    assert await code_of(sandbox, sms(phone)) == "OK"
    row = await reported(sandbox, phone, attempts=3)
    assert [r["outcome"] for r in row["reports"]] == ["http_200_not_acknowledged", "http_500", "http_200"]
    assert len(receiver.seen) == 3 and len({s.body for s in receiver.seen}) == 1
    for seen in receiver.seen:
        assert seen.headers["X-Sms-Signature"] == signature(seen.headers["X-Sms-Timestamp"], seen.body)


async def test_faults_apply_and_reset_forgets_everything(sandbox) -> None:
    phone = new_phone()
    await sandbox.put("/_control/faults/sms", json={"errorRate": 1.0, "errorKind": "503"})
    assert (await send(sandbox, sms(phone))).status_code == 503
    await sandbox.delete("/_control/faults/sms")
    assert await code_of(sandbox, sms(phone)) == "OK"
    templates = (await sandbox.get("/_control/sms/templates")).json()
    assert templates["signName"] == "三湘政务"
    assert {"item", "caseNo", "deadline"} == set(templates["templates"][0]["variables"])
    assert (await sandbox.delete("/_control/sms")).status_code == 204
    assert await sent(sandbox, phone) == []
    assert await code_of(sandbox, sms(phone)) == "OK"  # the limit counted only what was forgotten
