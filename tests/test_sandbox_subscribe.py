"""The sandbox's WeChat subscribe messages: the real body and errcodes, a consent ledger where a
one-time accept allows exactly one message and a long-term one many, and a record of every request
and every message accepted (so the BFF's tests can count what reached WeChat)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import httpx

from tests.callback_receiver import Receiver

APPID, SECRET = "wx5a0d5a4d1e0c0001", "sandbox-wechat-secret"
SEND = "/wechat/cgi-bin/message/subscribe/send"


async def token(sandbox: httpx.AsyncClient) -> str:
    answer = await sandbox.post(
        "/wechat/cgi-bin/stable_token",
        json={"grant_type": "client_credential", "appid": APPID, "secret": SECRET},
    )
    return str(answer.json()["access_token"])


async def templates(sandbox: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    listed = (await sandbox.get("/_control/wechat/subscribe/templates")).json()
    return {t["title"]: t for t in listed}


async def new_user(sandbox: httpx.AsyncClient) -> str:
    openid = "o" + uuid.uuid4().hex
    assert (await sandbox.post("/_control/wechat/codes", json={"openid": openid})).status_code == 201
    return openid


async def choose(sandbox: httpx.AsyncClient, openid: str, **results: str) -> dict[str, Any]:
    answer = await sandbox.post(
        "/_control/wechat/subscribe/consents", json={"openid": openid, "results": results}
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def progress_data(**override: str) -> dict[str, dict[str, str]]:
    values = {"thing1": "户口迁移登记", "character_string2": "430100202612010001", "phrase3": "已受理"}
    values["time4"] = "2026年12月1日 15:01"
    values.update(override)
    return {k: {"value": v} for k, v in values.items()}


def supplement_data(**override: str) -> dict[str, dict[str, str]]:
    values = {
        "thing1": "户口迁移登记",
        "character_string2": "430100202612010001",
        "thing3": "请补充户口簿首页复印件",
        "date4": "2026年12月8日",
    }
    values.update(override)
    return {k: {"value": v} for k, v in values.items()}


async def send(
    sandbox: httpx.AsyncClient, access_token: str, openid: str, template_id: str, data: Any, **extra: Any
) -> dict[str, Any]:
    body = {"touser": openid, "template_id": template_id, "page": "pages/case/detail?id=1", "data": data}
    body.update({"miniprogram_state": "formal", "lang": "zh_CN"}, **extra)
    answer = await sandbox.post(SEND, params={"access_token": access_token}, json=body)
    assert answer.status_code == 200  # WeChat answers errors with HTTP 200 and an errcode
    return dict(answer.json())


async def sent(sandbox: httpx.AsyncClient, openid: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/wechat/subscribe/messages", params={"openid": openid})).json())


async def received(sandbox: httpx.AsyncClient, openid: str) -> list[int]:
    rows = (await sandbox.get("/_control/wechat/subscribe/requests", params={"openid": openid})).json()
    return [r["errcode"] for r in rows]


async def test_templates_are_listed_with_keywords_and_whether_long_term(sandbox) -> None:
    listed = await templates(sandbox)
    assert listed["办件进度通知"]["longTerm"] is True
    assert listed["材料补正提醒"]["longTerm"] is False
    assert listed["材料补正提醒"]["keywords"]["thing3"] == "补正说明"
    assert len({t["templateId"] for t in listed.values()}) == len(listed) >= 4


async def test_one_time_accept_allows_exactly_one_message_then_43101(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["材料补正提醒"]["templateId"]
    assert (await send(sandbox, access_token, openid, template_id, supplement_data()))["errcode"] == 43101
    ledger = await choose(sandbox, openid, **{template_id: "accept"})
    assert ledger["consents"][0]["remaining"] == 1
    first = await send(sandbox, access_token, openid, template_id, supplement_data(), lang="en_US")
    assert first["errcode"] == 0 and first["errmsg"] == "ok"
    assert first["msgid"] > 2**31  # a real msgid does not fit an int32
    again = await send(sandbox, access_token, openid, template_id, supplement_data())
    assert again["errcode"] == 43101
    messages = await sent(sandbox, openid)
    assert [(m["msgid"], m["consent"], m["lang"]) for m in messages] == [
        (first["msgid"], "one_time", "en_US")
    ]
    assert messages[0]["data"]["thing3"]["value"] == "请补充户口簿首页复印件"
    assert messages[0]["page"] == "pages/case/detail?id=1"
    assert await received(sandbox, openid) == [43101, 0, 43101]


async def test_one_time_accepts_add_up_and_concurrent_sends_share_none(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["缴费通知"]["templateId"]
    await choose(sandbox, openid, **{template_id: "accept"})
    await choose(sandbox, openid, **{template_id: "accept"})
    data = {
        "thing1": {"value": "不动产登记费"},
        "amount2": {"value": "80.00元"},
        "date3": {"value": "2026-12-31"},
    }
    answers = await asyncio.gather(
        *[send(sandbox, access_token, openid, template_id, data) for _ in range(8)]
    )
    assert sorted(a["errcode"] for a in answers) == [0, 0] + [43101] * 6
    assert len(await sent(sandbox, openid)) == 2


async def test_long_term_consent_allows_many_until_rejected(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    listed = await templates(sandbox)
    progress, supplement = listed["办件进度通知"]["templateId"], listed["材料补正提醒"]["templateId"]
    await choose(sandbox, openid, **{progress: "accept", supplement: "reject"})
    for _ in range(5):
        assert (await send(sandbox, access_token, openid, progress, progress_data()))["errcode"] == 0
    assert (await send(sandbox, access_token, openid, supplement, supplement_data()))["errcode"] == 43101
    await choose(sandbox, openid, **{progress: "reject"})
    assert (await send(sandbox, access_token, openid, progress, progress_data()))["errcode"] == 43101
    assert [m["consent"] for m in await sent(sandbox, openid)] == ["long_term"] * 5


async def test_ban_takes_back_and_filter_grants_nothing(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    listed = await templates(sandbox)
    booking, reminder = listed["预约成功通知"]["templateId"], listed["预约提醒"]["templateId"]
    await choose(sandbox, openid, **{booking: "accept", reminder: "filter"})
    await choose(sandbox, openid, **{booking: "ban"})
    data = {
        "thing1": {"value": "出入境证件办理"},
        "thing2": {"value": "长沙市政务服务中心"},
        "time3": {"value": "2026-12-02 09:30~10:00"},
        "character_string4": {"value": "A-0042"},
    }
    assert (await send(sandbox, access_token, openid, booking, data))["errcode"] == 43101
    reminder_data = {
        "thing1": {"value": "出入境证件办理"},
        "time2": {"value": "09:30"},
        "thing3": {"value": "请携带身份证"},
    }
    assert (await send(sandbox, access_token, openid, reminder, reminder_data))["errcode"] == 43101
    assert await sent(sandbox, openid) == []


async def test_a_prompt_takes_at_most_three_templates_of_the_set(sandbox) -> None:
    openid = await new_user(sandbox)
    ids = [t["templateId"] for t in (await templates(sandbox)).values()]
    four = {"openid": openid, "results": dict.fromkeys(ids[:4], "accept")}
    assert (await sandbox.post("/_control/wechat/subscribe/consents", json=four)).status_code == 400
    unknown = {"openid": openid, "results": {"no-such-template": "accept"}}
    assert (await sandbox.post("/_control/wechat/subscribe/consents", json=unknown)).status_code == 400


async def test_token_openid_and_template_errors(sandbox, db) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["办件进度通知"]["templateId"]
    await choose(sandbox, openid, **{template_id: "accept"})
    assert (await send(sandbox, "not-a-token", openid, template_id, progress_data()))["errcode"] == 40001
    assert (await send(sandbox, access_token, "o-nobody", template_id, progress_data()))["errcode"] == 40003
    assert (await send(sandbox, access_token, openid, "no-such-tmpl", progress_data()))["errcode"] == 40037
    bad_state = await send(
        sandbox, access_token, openid, template_id, progress_data(), miniprogram_state="beta"
    )
    assert bad_state["errcode"] == 47001
    expires = await db.fetchval("SELECT expires_at FROM sandbox.wechat_tokens WHERE token = $1", access_token)
    await db.execute(
        "UPDATE sandbox.wechat_tokens SET expires_at = now() - interval '1 second' WHERE token = $1",
        access_token,
    )
    try:
        assert (await send(sandbox, access_token, openid, template_id, progress_data()))["errcode"] == 42001
    finally:
        # Other tests of the session share the app's token: give it its lifetime back.
        await db.execute(
            "UPDATE sandbox.wechat_tokens SET expires_at = $2 WHERE token = $1", access_token, expires
        )
    assert await sent(sandbox, openid) == []
    assert await received(sandbox, openid) == [40001, 40037, 47001, 42001]


async def test_values_must_fit_their_keyword_type(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["办件进度通知"]["templateId"]
    await choose(sandbox, openid, **{template_id: "accept"})
    broken = [
        progress_data(thing1="一" * 21),  # thing: at most 20 characters
        progress_data(phrase3="正在审核办理中"),  # phrase: at most 5 Chinese characters
        progress_data(phrase3="ok"),  # phrase: Chinese only
        progress_data(character_string2="编号430100"),  # character_string: letters, digits, symbols
        progress_data(character_string2="4" * 33),
        progress_data(time4="明天下午"),
        progress_data(thing1=""),
        {k: v for k, v in progress_data().items() if k != "time4"},  # a keyword missing
        {**progress_data(), "thing9": {"value": "多余"}},  # a keyword the template does not have
    ]
    for data in broken:
        answer = await send(sandbox, access_token, openid, template_id, data)
        assert answer["errcode"] == 47003, (data, answer)
        assert answer["errmsg"].startswith("argument invalid!")
    edge = progress_data(thing1="一" * 20, phrase3="审核中", character_string2="4" * 32, time4="15:01")
    assert (await send(sandbox, access_token, openid, template_id, edge))["errcode"] == 0
    assert len(await sent(sandbox, openid)) == 1


async def test_forced_errors_use_no_consent_and_the_daily_quota(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["材料补正提醒"]["templateId"]
    await choose(sandbox, openid, **{template_id: "accept"})
    forced = await sandbox.post("/_control/wechat/subscribe/failures", json={"errcode": -1, "count": 2})
    assert forced.json()["forced"] == [-1, -1]
    for _ in range(2):
        busy = await send(sandbox, access_token, openid, template_id, supplement_data())
        assert busy["errcode"] == -1 and busy["errmsg"].startswith("system error")
    assert (await send(sandbox, access_token, openid, template_id, supplement_data()))["errcode"] == 0
    await choose(sandbox, openid, **{template_id: "accept"})
    assert (await sandbox.put("/_control/wechat/subscribe/config", json={"dailyLimit": 0})).status_code == 200
    try:
        assert (await send(sandbox, access_token, openid, template_id, supplement_data()))["errcode"] == 45009
    finally:
        await sandbox.put("/_control/wechat/subscribe/config", json={"dailyLimit": 1_000_000})
    # The quota refusal kept the accept: it still allows one message.
    assert (await send(sandbox, access_token, openid, template_id, supplement_data()))["errcode"] == 0
    assert await received(sandbox, openid) == [-1, -1, 0, 45009, 0]


async def test_faults_apply_to_the_subscribe_route(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["办件进度通知"]["templateId"]
    await sandbox.put("/_control/faults/wechat", json={"errorRate": 1.0, "errorKind": "503"})
    body = {"touser": openid, "template_id": template_id, "data": progress_data()}
    answer = await sandbox.post(SEND, params={"access_token": access_token}, json=body)
    assert answer.status_code == 503
    assert await received(sandbox, openid) == []


async def test_reset_forgets_everything(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["办件进度通知"]["templateId"]
    await choose(sandbox, openid, **{template_id: "accept"})
    assert (await send(sandbox, access_token, openid, template_id, progress_data()))["errcode"] == 0
    await sandbox.post("/_control/wechat/subscribe/failures", json={"errcode": 45009})
    assert (await sandbox.delete("/_control/wechat/subscribe")).status_code == 204
    assert await sent(sandbox, openid) == []
    assert (await sandbox.get(f"/_control/wechat/subscribe/consents/{openid}")).json()["consents"] == []
    assert (await send(sandbox, access_token, openid, template_id, progress_data()))["errcode"] == 43101


async def test_sent_events_are_pushed_signed_and_retried(sandbox) -> None:
    access_token, openid = await token(sandbox), await new_user(sandbox)
    template_id = (await templates(sandbox))["办件进度通知"]["templateId"]
    await choose(sandbox, openid, **{template_id: "accept"})
    hook = await Receiver().start()
    push_token = "test-push-token"
    try:
        await sandbox.put("/_control/wechat/subscribe/push", json={"url": hook.url, "token": push_token})
        hook.plan.append((500, 0.0, None))
        first = await send(sandbox, access_token, openid, template_id, progress_data())
        await sandbox.post(
            "/_control/wechat/subscribe/push-failures", json={"errorStatus": "fail:user block"}
        )
        second = await send(sandbox, access_token, openid, template_id, progress_data())
        seen = await hook.wait_for(3)
    finally:
        await sandbox.put("/_control/wechat/subscribe/push", json={})
        await hook.stop()
    assert len(seen) == 3
    for one in seen:
        parts = sorted([push_token, one.query["timestamp"], one.query["nonce"]])
        assert one.query["signature"] == hashlib.sha1("".join(parts).encode()).hexdigest()
    events = {}
    for one in seen:
        event = json.loads(one.body)
        assert (event["Event"], event["FromUserName"]) == ("subscribe_msg_sent_event", openid)
        events.setdefault(event["List"]["MsgID"], []).append(event["List"])
    assert len(events[str(first["msgid"])]) == 2  # the first push got a 500 and was tried again
    assert events[str(first["msgid"])][-1]["ErrorStatus"] == "success"
    [blocked] = events[str(second["msgid"])]
    assert (blocked["ErrorCode"], blocked["ErrorStatus"]) == ("10005", "fail:user block")
    rows = {m["msgid"]: m for m in await sent(sandbox, openid)}
    assert [e["outcome"] for e in rows[first["msgid"]]["events"]] == ["http_500", "http_200"]
    assert rows[second["msgid"]]["eventStatus"] == "fail:user block"
