"""The 12345 hotline sandbox over real HTTP: filing (idempotent, refusals), a complaint through every
step with each webhook verified, anonymity towards the department, the deadline rule, dropped webhooks,
a changes feed that a late commit cannot slip past, and the knowledge base answering plain questions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.conftest import free_port

SECRET = b"sandbox-hotline-secret"
CHANNEL = {"Authorization": "Bearer sandbox-hotline-channel-key"}
DEPT = {"Authorization": "Bearer sandbox-hotline-dept-key"}
CHINA = timezone(timedelta(hours=8))
RSJ = "11430100007181473J"


@dataclass
class Webhooks:
    url: str
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def wait(self, count: int, seconds: float = 5) -> None:
        deadline = time.monotonic() + seconds
        while len(self.got) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


@pytest.fixture
async def webhooks() -> AsyncIterator[Webhooks]:
    port = free_port()
    rec = Webhooks(f"http://127.0.0.1:{port}/hotline")

    async def handle(request: web.Request) -> web.Response:
        rec.got.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hotline", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()


def verified(headers: dict[str, str], body: bytes) -> bool:
    expected = hmac.new(
        SECRET, headers["X-Hotline-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(headers["X-Hotline-Signature"], "sha256=" + expected)


def ticket(kind: str = "complaint", notify_url: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": "HT" + secrets.token_hex(8),
        "kind": kind,
        "content": "小区门口的社保卡服务网点连续三天不开门，电话也打不通，耽误补办社保卡。",
        "caller": {"name": "张三", "phone": "13800138000", "ref": "P-" + secrets.token_hex(4)},
        "channel": "mini_program",
        "location": {"region_code": "430104", "address": "岳麓区麓谷大道 627 号"},
        "notify_url": notify_url,
        **extra,
    }


async def file(sandbox: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    made = await sandbox.post("/hotline/v1/tickets", json=body, headers=CHANNEL)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def advance(sandbox: httpx.AsyncClient, ticket_no: str, action: str, **body: Any) -> httpx.Response:
    return await sandbox.post(
        f"/_control/hotline/tickets/{ticket_no}/advance", json={"action": action, **body}
    )


async def test_filing_is_idempotent_and_refuses_bad_input(sandbox: httpx.AsyncClient) -> None:
    body = ticket()
    assert (await sandbox.post("/hotline/v1/tickets", json=body)).json()["error"]["code"] == "unauthorised"
    made = await file(sandbox, body)
    assert (
        made["ticket_no"].startswith("RX") and len(made["ticket_no"]) == 16 and len(made["follow_code"]) == 6
    )
    assert made["status"] == "accepted" and made["status_code"] == "10" and made["deadline_at"] is None
    assert made["caller"]["phone"] == "138****8000" and [e["type"] for e in made["events"]] == ["accepted"]
    assert (await file(sandbox, body)) == made  # a retry answers the same ticket
    reused = await sandbox.post(
        "/hotline/v1/tickets", json={**body, "content": "另一件事情另一件事情"}, headers=CHANNEL
    )
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "request_id_reused"

    async def refused(status: int, code: str, **change: Any) -> None:
        answer = await sandbox.post("/hotline/v1/tickets", json={**ticket(), **change}, headers=CHANNEL)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["code"] == code

    await refused(400, "bad_request", kind="gossip")
    await refused(400, "bad_request", caller={"name": "张三"})
    await refused(422, "invalid_field", content="x" * 2001)
    await refused(422, "invalid_field", caller={"name": "张三", "phone": "12345"})
    await refused(422, "invalid_field", attachments=[{"name": "a.jpg", "url": "file:///etc/passwd"}])
    await refused(422, "anonymity_not_allowed", kind="consultation", anonymous=True)
    missing = await sandbox.get("/hotline/v1/tickets/RX00000000000000", headers=CHANNEL)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ticket_not_found"
    mine = await sandbox.get(
        "/hotline/v1/tickets", params={"caller_ref": body["caller"]["ref"]}, headers=CHANNEL
    )
    assert [t["ticket_no"] for t in mine.json()["tickets"]] == [made["ticket_no"]]
    assert (await sandbox.get("/hotline/v1/tickets", headers=CHANNEL)).status_code == 422


async def test_complaint_through_every_step_with_signed_webhooks(
    sandbox: httpx.AsyncClient, webhooks: Webhooks
) -> None:
    made = await file(sandbox, ticket("complaint", webhooks.url, anonymous=True))
    no = made["ticket_no"]
    assert (await advance(sandbox, no, "start")).status_code == 409  # not dispatched yet
    assert (await advance(sandbox, no, "feedback", answer="x")).json()["error"]["code"] == "bad_transition"
    early = await sandbox.post(
        f"/hotline/v1/tickets/{no}/rating",
        json={"request_id": secrets.token_hex(6), "satisfaction": "satisfied", "resolved": True},
        headers=CHANNEL,
    )
    assert early.status_code == 409 and early.json()["error"]["code"] == "not_ratable"

    # Dispatched 8 days ago: the 5-working-day deadline has passed by now.
    dispatched = await advance(
        sandbox, no, "dispatch", at=(datetime.now(UTC) - timedelta(days=8)).isoformat()
    )
    assert dispatched.status_code == 201, dispatched.text
    assert dispatched.json()["data"]["department_code"] == RSJ
    assert (await advance(sandbox, no, "start")).json()["status"] == "in_progress"
    asked = await advance(sandbox, no, "ask", questions=["请提供网点的具体名称", "请上传现场照片"])
    assert asked.status_code == 201, asked.text
    assert asked.json()["status"] == "awaiting_info"
    info_id = asked.json()["data"]["info_request_id"]
    before = (await sandbox.get(f"/hotline/v1/tickets/{no}", headers=CHANNEL)).json()
    assert before["open_info_request"]["questions"] == ["请提供网点的具体名称", "请上传现场照片"]
    wrong = await sandbox.post(
        f"/hotline/v1/tickets/{no}/replies",
        json={"request_id": secrets.token_hex(6), "info_request_id": "IRX", "text": "麓谷大道网点"},
        headers=CHANNEL,
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "no_open_info_request"
    await asyncio.sleep(0.05)
    replied = await sandbox.post(
        f"/hotline/v1/tickets/{no}/replies",
        json={
            "request_id": secrets.token_hex(6),
            "info_request_id": info_id,
            "text": "麓谷大道社保卡服务网点",
        },
        headers=CHANNEL,
    )
    assert replied.status_code == 201 and replied.json()["event"]["status"] == "in_progress"
    after = (await sandbox.get(f"/hotline/v1/tickets/{no}", headers=CHANNEL)).json()
    assert after["open_info_request"] is None
    assert datetime.fromisoformat(after["deadline_at"]) > datetime.fromisoformat(before["deadline_at"])
    assert after["overdue"]

    supervised = await advance(sandbox, no, "supervise", opinion="超期未办结，请于两日内反馈")
    assert supervised.json()["status"] == "supervised" and supervised.json()["status_code"] == "40"
    feedback = await advance(sandbox, no, "feedback", answer="已责成网点恢复营业并公示服务电话。")
    assert feedback.json()["status"] == "feedback_given" and feedback.json()["data"]["on_time"] is False
    rating = {"request_id": secrets.token_hex(6), "satisfaction": "basically_satisfied", "resolved": True}
    rated = await sandbox.post(f"/hotline/v1/tickets/{no}/rating", json=rating, headers=CHANNEL)
    assert rated.status_code == 201 and rated.json()["event"]["type"] == "rated"
    again = await sandbox.post(
        f"/hotline/v1/tickets/{no}/rating",
        json={**rating, "request_id": secrets.token_hex(6)},
        headers=CHANNEL,
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rated"
    closed = await advance(sandbox, no, "close")
    assert (
        closed.json()["status"] == "closed"
        and closed.json()["data"]["rating"]["satisfaction"] == "basically_satisfied"
    )
    assert (await advance(sandbox, no, "close")).status_code == 409

    final = (await sandbox.get(f"/hotline/v1/tickets/{no}", headers=CHANNEL)).json()
    steps = ["accepted", "dispatched", "started", "info_requested", "info_supplied", "supervised"]
    steps += ["feedback_given", "rated", "closed"]
    assert [e["type"] for e in final["events"]] == steps
    assert [e["ticket_seq"] for e in final["events"]] == list(range(1, 10))
    assert final["status"] == "closed" and final["status_code"] == "60" and not final["overdue"]

    await webhooks.wait(len(steps))
    assert len(webhooks.got) == len(steps)
    assert all(verified(h, b) for h, b in webhooks.got)
    got = sorted((json.loads(b) for _, b in webhooks.got), key=lambda e: e["seq"])
    assert [e["type"] for e in got] == steps
    assert {h["X-Hotline-Event-Id"] for h, _ in webhooks.got} == {e["event_id"] for e in final["events"]}
    headers, raw = webhooks.got[0]
    assert not verified({**headers, "X-Hotline-Timestamp": str(int(headers["X-Hotline-Timestamp"]) + 1)}, raw)
    assert not verified(headers, raw.replace(b"accepted", b"rejected"))

    # The department sees the ticket but not who filed it.
    seen = await sandbox.get(f"/hotline/v1/departments/{RSJ}/tickets/{no}", headers=DEPT)
    assert seen.status_code == 200 and seen.json()["anonymous"] and seen.json()["caller"] is None
    assert "13800138000" not in seen.text and "follow_code" not in seen.json()
    assert (await sandbox.get(f"/hotline/v1/departments/OTHER/tickets/{no}", headers=DEPT)).status_code == 404
    assert (
        await sandbox.get(f"/hotline/v1/departments/{RSJ}/tickets/{no}", headers=CHANNEL)
    ).status_code == 401


async def test_named_caller_is_shown_to_the_department_and_the_deadline_rule(
    sandbox: httpx.AsyncClient,
) -> None:
    no = (await file(sandbox, ticket("complaint")))["ticket_no"]
    friday = datetime(2026, 11, 13, 10, 0, tzinfo=CHINA)  # a Friday, long past
    dispatched = await advance(sandbox, no, "dispatch", at=friday.isoformat())
    assert datetime.fromisoformat(dispatched.json()["data"]["deadline_at"]) == datetime(
        2026, 11, 20, 18, tzinfo=CHINA
    )
    seen = (await sandbox.get(f"/hotline/v1/departments/{RSJ}/tickets/{no}", headers=DEPT)).json()
    assert seen["caller"] == {"name": "张三", "phone": "13800138000"}

    consult = (await file(sandbox, ticket("consultation")))["ticket_no"]
    due = (await advance(sandbox, consult, "dispatch", at=friday.isoformat())).json()["data"]["deadline_at"]
    assert datetime.fromisoformat(due) == datetime(2026, 11, 16, 18, tzinfo=CHINA)  # next Monday
    report = (await file(sandbox, ticket("report", anonymous=True)))["ticket_no"]
    urgent = await advance(sandbox, report, "dispatch", at=friday.isoformat(), urgent=True)
    assert datetime.fromisoformat(urgent.json()["data"]["deadline_at"]) == friday + timedelta(hours=2)
    assert urgent.json()["data"]["urgency"] == "urgent"

    fresh = (await file(sandbox, ticket("suggestion")))["ticket_no"]
    await advance(sandbox, fresh, "dispatch")
    not_yet = await advance(sandbox, fresh, "supervise")
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "not_overdue"
    swept = (await sandbox.post("/_control/hotline/sweep")).json()
    assert no in swept["supervised"] and report in swept["supervised"] and fresh not in swept["supervised"]

    # An operator answers a consultation at once; a complaint cannot skip the department.
    direct = (await file(sandbox, ticket("consultation", content="社保卡丢了去哪里补办？需要带什么？")))[
        "ticket_no"
    ]
    answered = await advance(sandbox, direct, "feedback", answer="携带身份证到就近社保卡服务网点补办。")
    assert answered.status_code == 201 and answered.json()["status"] == "feedback_given"


async def test_dropped_webhooks_are_still_in_the_feed(sandbox: httpx.AsyncClient, webhooks: Webhooks) -> None:
    no = (await file(sandbox, ticket("praise", webhooks.url)))["ticket_no"]
    await webhooks.wait(1)
    await sandbox.put("/_control/hotline/config", json={"drop_webhooks": True})
    try:
        dispatched = await advance(sandbox, no, "dispatch")
        await asyncio.sleep(0.3)
        assert len(webhooks.got) == 1
        attempts = (await sandbox.get(f"/_control/hotline/deliveries/{dispatched.json()['event_id']}")).json()
        assert attempts["attempts"] == [{"attempt": 1, "outcome": "dropped"}]
    finally:
        await sandbox.put("/_control/hotline/config", json={"drop_webhooks": False})
    feed = await sandbox.get(
        "/hotline/v1/changes", params={"since": dispatched.json()["seq"] - 1}, headers=CHANNEL
    )
    assert dispatched.json()["event_id"] in [e["event_id"] for e in feed.json()["events"]]
    assert (await sandbox.get("/hotline/v1/changes", params={"limit": 0}, headers=CHANNEL)).status_code == 422


async def test_changes_feed_cannot_skip_a_late_commit(sandbox: httpx.AsyncClient) -> None:
    first = (await file(sandbox, ticket()))["ticket_no"]
    second = (await file(sandbox, ticket()))["ticket_no"]
    cursor = 0
    while True:  # read to the end
        page = (
            await sandbox.get("/hotline/v1/changes", params={"since": cursor, "limit": 500}, headers=CHANNEL)
        ).json()
        if not page["events"]:
            break
        cursor = page["next_since"]
    # The first dispatch takes its seq and stays uncommitted for a while; the second starts after it.
    slow = asyncio.create_task(advance(sandbox, first, "dispatch", hold_ms=600))
    await asyncio.sleep(0.15)
    fast = asyncio.create_task(advance(sandbox, second, "dispatch"))
    seen: list[int] = []
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        page = (await sandbox.get("/hotline/v1/changes", params={"since": cursor}, headers=CHANNEL)).json()
        seen += [e["seq"] for e in page["events"]]
        cursor = page["next_since"]
        await asyncio.sleep(0.02)
    slow_event, fast_event = (await slow).json(), (await fast).json()
    assert seen == [slow_event["seq"], fast_event["seq"]]
    assert fast_event["seq"] == slow_event["seq"] + 1


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("我的社保卡丢了怎么办", "社保卡丢了怎么补办？"),
        ("公积金怎么取出来", "公积金怎么提取？"),
        ("看病的钱能报销多少", "医保报销怎么办理？"),
        ("驾照快过期了", "驾驶证到期怎么换证？"),
        ("孩子上小学怎么报名", "小学入学怎么报名？"),
    ],
)
async def test_knowledge_base_answers_a_plain_question(
    sandbox: httpx.AsyncClient, question: str, expected: str
) -> None:
    found = await sandbox.get("/hotline/v1/kb/search", params={"q": question}, headers=CHANNEL)
    assert found.status_code == 200, found.text
    results = found.json()["results"]
    assert results and results[0]["question"] == expected
    assert results[0]["answer"] and results[0]["department"] and 0 < results[0]["score"] <= 1
    entry = await sandbox.get(f"/hotline/v1/kb/{results[0]['kb_id']}", headers=CHANNEL)
    assert entry.json()["question"] == expected


async def test_knowledge_base_refusals(sandbox: httpx.AsyncClient) -> None:
    assert (await sandbox.get("/hotline/v1/kb/search", params={"q": "今天天气不错"}, headers=CHANNEL)).json()[
        "results"
    ] == []
    assert (await sandbox.get("/hotline/v1/kb/search", params={"q": "怎么办理"}, headers=CHANNEL)).json()[
        "results"
    ] == []
    empty = await sandbox.get("/hotline/v1/kb/search", params={"q": " "}, headers=CHANNEL)
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_field"
    assert (await sandbox.get("/hotline/v1/kb/search", params={"q": "社保卡"})).status_code == 401
    missing = await sandbox.get("/hotline/v1/kb/KB9999", headers=CHANNEL)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "kb_not_found"
    count = len(
        (
            await sandbox.get("/hotline/v1/kb/search", params={"q": "社保卡", "limit": 20}, headers=CHANNEL)
        ).json()["results"]
    )
    assert count >= 2
