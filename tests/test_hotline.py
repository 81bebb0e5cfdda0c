"""12345 tickets through the BFF, against the sandbox's 12345 over HTTP.

A complaint filed from the mini-program goes through every 12345 step (advanced with the sandbox's
control API; each step arrives as the webhook 12345 really signs, forwarded into the app), the
resident sees each on the ticket's timeline, and the steps that matter are outbox rows that push
turns into notifications. A consultation answered by the knowledge base files nothing. Bad input
changes nothing. Forged webhooks are refused; dropped ones are caught up from the feed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from tests.auth_helpers import login_resident
from tests.callback_receiver import listen
from tests.delivery_helpers import ensure_mirror, fresh_phone
from tests.test_journey_helpers import auth, key, upload
from tests.test_push import overrides, pipeline

NOTIFY = "/api/v1/hotline/12345/notify"
CHANNEL = {"Authorization": "Bearer sandbox-hotline-channel-key"}
DEPT = {"Authorization": "Bearer sandbox-hotline-dept-key"}
RSJ = "11430100007181473J"
COMPLAINT = "小区门口的社保卡服务网点连续三天不开门，电话也打不通，耽误补办社保卡。"
STEPS = [
    "accepted",
    "dispatched",
    "started",
    "info_requested",
    "info_supplied",
    "supervised",
    "feedback_given",
    "rated",
    "closed",
]
TOLD = ["dispatched", "info_requested", "supervised", "feedback_given", "closed"]


class Forwarder:
    """12345's webhooks, as the sandbox sends them, handed to the in-process app unchanged."""

    def __init__(self) -> None:
        self.app: httpx.AsyncClient | None = None
        self.answers: list[tuple[int, dict[str, Any], str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.app is not None
        headers = {
            k: v for k, v in request.headers.items() if k.lower().startswith(("x-hotline-", "content-type"))
        }
        body = await request.read()
        answer = await self.app.post(NOTIFY, content=body, headers=headers)
        self.answers.append((answer.status_code, answer.json(), json.loads(body)["type"]))
        return web.Response(status=answer.status_code)

    async def start(self) -> Forwarder:
        self._runner, port = await listen(self._handle)
        self.url = f"http://127.0.0.1:{port}/hotline"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def forwarder() -> AsyncIterator[Forwarder]:
    hook = await Forwarder().start()
    try:
        yield hook
    finally:
        await hook.stop()


def hotline_settings(sandbox_url: str, **extra: Any) -> dict[str, Any]:
    return overrides(sandbox_url, hotline_url=f"{sandbox_url}/hotline", **extra)


@pytest.fixture
async def client(
    make_client: Any, services: Any, sandbox_url: str, forwarder: Forwarder
) -> httpx.AsyncClient:
    await ensure_mirror(services, sandbox_url)
    app: httpx.AsyncClient = await make_client(
        **hotline_settings(sandbox_url, hotline_notify_url=forwarder.url)
    )
    forwarder.app = app
    return app


async def file(
    client: httpx.AsyncClient, who: dict[str, Any], body: dict[str, Any], idem: str | None = None
) -> httpx.Response:
    return await client.post("/api/v1/hotline/tickets", json=body, headers=auth(who, idem or key()))


def complaint(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "complaint",
        "text": COMPLAINT,
        "location": {"regionCode": "430104", "address": "岳麓区麓谷大道627号"},
        **fields,
    }


async def control(sandbox: httpx.AsyncClient, ticket_no: str, action: str, **body: Any) -> dict[str, Any]:
    answer = await sandbox.post(
        f"/_control/hotline/tickets/{ticket_no}/advance", json={"action": action, **body}
    )
    assert answer.status_code == 201, answer.text
    event: dict[str, Any] = answer.json()
    return event


async def until(check: Callable[[], Awaitable[Any]], seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def ticket(
    client: httpx.AsyncClient, who: dict[str, Any], ticket_id: str, **headers: str
) -> dict[str, Any]:
    answer = await client.get(f"/api/v1/hotline/tickets/{ticket_id}", headers=auth(who, **headers))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body: dict[str, Any] = answer.json()
    return body


async def shows(client: httpx.AsyncClient, who: dict[str, Any], ticket_id: str, step: str) -> dict[str, Any]:
    """The ticket once `step` is on its timeline (the webhook arrived)."""

    async def check() -> dict[str, Any] | None:
        seen = await ticket(client, who, ticket_id)
        return seen if step in [t["kind"] for t in seen["timeline"]] else None

    found = await until(check)
    assert found, f"{step} never reached the timeline"
    result: dict[str, Any] = found
    return result


async def told(db: asyncpg.Connection, person_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT payload ->> 'event' AS event FROM bff.outbox WHERE topic = 'hotline.changed' AND person_id = $1 ORDER BY id",
        person_id,
    )
    return [r["event"] for r in rows]


async def test_a_complaint_from_the_mini_program_goes_through_every_12345_step(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, forwarder: Forwarder
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=3)
    photo = await upload(client, who)
    idem = key()
    filed = await file(client, who, complaint(attachments=[photo], anonymous=True), idem)
    assert filed.status_code == 201, filed.text
    made = filed.json()
    ticket_id, no = made["id"], made["ticketNo"]
    assert no.startswith("RX") and made["status"] == "accepted" and made["kind"] == "complaint"
    assert [t["kind"] for t in made["timeline"]] == ["accepted"] and made["deadlineAt"] is None
    assert made["attachments"] == [{"uploadId": photo, "fileName": "申请表.pdf"}]
    assert made["location"]["address"].endswith("****")  # masked: the full one went to 12345 only
    replay = await file(client, who, complaint(attachments=[photo], anonymous=True), idem)
    assert replay.content == filed.content and replay.headers["idempotent-replayed"] == "true"

    at_12345 = (await sandbox.get(f"/hotline/v1/tickets/{no}", headers=CHANNEL)).json()
    assert at_12345["channel"] == "mini_program" and at_12345["anonymous"] is True
    assert at_12345["caller"]["ref"] == who["person_id"] and at_12345["content"] == COMPLAINT
    assert at_12345["attachments"][0]["url"].endswith(f"/api/v1/uploads/{photo}")
    assert await db.fetchval("SELECT attached_at IS NOT NULL FROM bff.uploads WHERE id = $1::uuid", photo)
    assert (
        len(
            (
                await sandbox.get(
                    "/hotline/v1/tickets", params={"caller_ref": who["person_id"]}, headers=CHANNEL
                )
            ).json()["tickets"]
        )
        == 1
    )

    # 分类派单 eight days ago: the five-working-day deadline has passed by now.
    await control(sandbox, no, "dispatch", at=(datetime.now(UTC) - timedelta(days=8)).isoformat())
    seen = await shows(client, who, ticket_id, "dispatched")
    assert seen["status"] == "dispatched" and seen["departmentName"] == "长沙市人力资源和社会保障局"
    assert seen["deadlineAt"] and seen["deadlineAt"].endswith("+08:00") and seen["overdue"] is True
    await control(sandbox, no, "start")
    assert (await shows(client, who, ticket_id, "started"))["status"] == "in_progress"

    asked = await control(sandbox, no, "ask", questions=["请提供网点的具体名称"])
    seen = await shows(client, who, ticket_id, "info_requested")
    assert seen["status"] == "awaiting_info" and seen["awaitingInfo"] is True
    assert seen["openInfoRequest"] == {
        "id": asked["data"]["info_request_id"],
        "questions": ["请提供网点的具体名称"],
    }
    deadline_before = seen["deadlineAt"]
    await asyncio.sleep(1.1)  # the clock stands still while 12345 waits: the deadline moves by that
    replied = await client.post(
        f"/api/v1/hotline/tickets/{ticket_id}/replies",
        json={"infoRequestId": seen["openInfoRequest"]["id"], "text": "麓谷大道社保卡服务网点"},
        headers=auth(who, key()),
    )
    assert replied.status_code == 201, replied.text
    assert replied.json()["status"] == "in_progress" and replied.json()["openInfoRequest"] is None
    assert replied.json()["deadlineAt"] > deadline_before

    await control(sandbox, no, "supervise", opinion="超期未办结，请于两日内反馈")
    sup = await shows(client, who, ticket_id, "supervised")
    assert sup["status"] == "supervised"
    early = await client.post(
        f"/api/v1/hotline/tickets/{ticket_id}/rating",
        json={"satisfaction": "satisfied", "resolved": True},
        headers=auth(who, key()),
    )
    assert early.status_code == 409 and early.json()["code"] == "hotline_not_ratable"
    await control(sandbox, no, "feedback", answer="已责成网点恢复营业并公示服务电话。")
    seen = await shows(client, who, ticket_id, "feedback_given")
    assert seen["status"] == "feedback_given" and seen["awaitingRating"] is True
    assert seen["timeline"][-1]["details"]["answer"] == "已责成网点恢复营业并公示服务电话。"
    listed = (await client.get("/api/v1/hotline/tickets", headers=auth(who))).json()
    assert [(t["id"], t["awaitingRating"]) for t in listed["items"]] == [(ticket_id, True)]

    rated = await client.post(
        f"/api/v1/hotline/tickets/{ticket_id}/rating",
        json={"satisfaction": "basically_satisfied", "resolved": True, "comment": "处理及时"},
        headers=auth(who, key()),
    )
    assert rated.status_code == 201, rated.text
    assert rated.json()["rating"] == {
        "satisfaction": "basically_satisfied",
        "resolved": True,
        "comment": "处理及时",
    }
    assert rated.json()["awaitingRating"] is False
    again = await client.post(
        f"/api/v1/hotline/tickets/{ticket_id}/rating",
        json={"satisfaction": "satisfied", "resolved": True},
        headers=auth(who, key()),
    )
    assert again.status_code == 409 and again.json()["code"] == "hotline_already_rated"
    await control(sandbox, no, "close")
    final = await shows(client, who, ticket_id, "closed")

    assert [t["kind"] for t in final["timeline"]] == STEPS
    assert [t["seq"] for t in final["timeline"]] == list(range(1, 10))
    assert final["status"] == "closed" and final["statusLabel"] == "已办结" and not final["overdue"]
    english = await ticket(client, who, ticket_id, **{"Accept-Language": "en"})
    assert (
        english["timeline"][5]["title"] == "Supervised for being late" and english["kindLabel"] == "Complaint"
    )
    # Every step came by the signed webhook 12345 sent (steps our own calls answered were duplicates;
    # 受理 may overtake our filing's commit: its answer carried it).
    assert all(status == 200 for status, _, _ in forwarder.answers)
    outcomes = {kind: body["outcome"] for _, body, kind in forwarder.answers}
    assert set(outcomes) == set(STEPS)
    assert {o for kind, o in outcomes.items() if kind != "accepted"} <= {"applied", "duplicate"}
    assert {outcomes[k] for k in TOLD} == {"applied"}

    # Told at the steps that matter, once each, however many times a step arrived.
    assert await told(db, who["person_id"]) == TOLD
    async with pipeline(client):

        async def notified() -> list[asyncpg.Record] | None:
            rows = await db.fetch(
                "SELECT template, category, title, body, link FROM bff.notifications WHERE person_id = $1 AND topic = 'hotline.changed' ORDER BY outbox_id",
                who["person_id"],
            )
            return rows if len(rows) == len(TOLD) else None

        rows = await until(notified, 20)
    assert rows, "push did not tell the resident"
    assert [r["template"] for r in rows] == [
        "hotline.changed",
        "hotline.info_requested",
        "hotline.changed",
        "hotline.changed",
        "hotline.changed",
    ]
    assert rows[1]["category"] == "action_needed" and all(
        r["link"] == f"/hotline/tickets/{ticket_id}" for r in rows
    )
    assert (
        no in rows[0]["body"]
        and "长沙市人力资源和社会保障局" in rows[0]["body"]
        and "办理时限" in rows[0]["body"]
    )
    assert all(COMPLAINT[:10] not in r["body"] for r in rows)  # the resident's words are never in a message
    inbox = (await client.get("/api/v1/messages", headers=auth(who))).json()
    assert any(m["title"] == "12345 工单需要补充信息" for m in inbox["items"])

    # The department sees the ticket but not who filed it.
    dept = await sandbox.get(f"/hotline/v1/departments/{RSJ}/tickets/{no}", headers=DEPT)
    assert dept.json()["anonymous"] is True and dept.json()["caller"] is None


async def test_a_consultation_answered_by_the_knowledge_base_files_nothing(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, channel="miniprogram", level=2)
    asked = await client.get(
        "/api/v1/hotline/answers", params={"q": "我的社保卡丢了怎么办"}, headers=auth(who)
    )
    assert asked.status_code == 200, asked.text
    assert asked.headers["cache-control"] == "no-store"
    suggestions = asked.json()
    assert suggestions["answersStatus"] == {"status": "ok"} and suggestions["itemsStatus"] == {"status": "ok"}
    assert suggestions["answers"][0]["question"] == "社保卡丢了怎么补办？"
    assert "12333" in suggestions["answers"][0]["answer"]
    assert suggestions["items"] and all(i["code"] and i["name"] for i in suggestions["items"])
    # The resident read the answer and went away: nothing was filed, here or at 12345.
    assert (
        await db.fetchval("SELECT count(*) FROM bff.hotline_tickets WHERE person_id = $1", who["person_id"])
        == 0
    )
    at_12345 = await sandbox.get(
        "/hotline/v1/tickets", params={"caller_ref": who["person_id"]}, headers=CHANNEL
    )
    assert at_12345.json()["tickets"] == []
    assert await told(db, who["person_id"]) == []
    assert (await client.get("/api/v1/hotline/tickets", headers=auth(who))).json()["items"] == []

    # A question the knowledge base cannot answer offers nothing, and is then filed.
    unknown = (
        await client.get("/api/v1/hotline/answers", params={"q": "今天天气不错"}, headers=auth(who))
    ).json()
    assert unknown["answers"] == []
    phone = fresh_phone()
    filed = await file(
        client, who, {"kind": "consultation", "text": f"{phone}我家门口的路灯坏了好几天，找谁修？"}
    )
    assert filed.status_code == 201, filed.text
    # A number typed into the text is masked wherever we show or keep it in plain text.
    assert phone not in filed.text and f"{phone[:3]}****{phone[-4:]}" in filed.json()["text"]
    kept = await db.fetchrow(
        "SELECT title, text_enc FROM bff.hotline_tickets WHERE person_id = $1", who["person_id"]
    )
    assert phone not in kept["title"] and phone.encode() not in kept["text_enc"]
    assert (
        await db.fetchval("SELECT count(*) FROM bff.hotline_tickets WHERE person_id = $1", who["person_id"])
        == 1
    )
    # No login, no suggestions: the call to 12345 is not free.
    assert (await client.get("/api/v1/hotline/answers", params={"q": "社保卡"})).status_code == 401


async def test_suggestions_survive_12345_being_down(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient
) -> None:
    await ensure_mirror(services, sandbox_url)
    down = await make_client(**{**hotline_settings(sandbox_url), "hotline_url": "http://127.0.0.1:9/hotline"})
    who = await login_resident(down, sandbox, level=2)
    asked = (await down.get("/api/v1/hotline/answers", params={"q": "社保卡丢了"}, headers=auth(who))).json()
    assert asked["answersStatus"] == {"status": "unavailable"} and asked["answers"] == []
    assert asked["itemsStatus"] == {"status": "ok"}


async def everything(db: asyncpg.Connection, person_ids: list[str]) -> tuple[Any, ...]:
    """All a ticket request could change, for these residents: here and at 12345."""
    return (
        tuple(
            await db.fetch(
                "SELECT id, status, version, rating, open_info_request FROM bff.hotline_tickets WHERE person_id = ANY($1) ORDER BY id",
                person_ids,
            )
        ),
        await db.fetchval(
            "SELECT count(*) FROM bff.hotline_events e JOIN bff.hotline_tickets t ON t.id = e.ticket_id WHERE t.person_id = ANY($1)",
            person_ids,
        ),
        await db.fetchval("SELECT count(*) FROM bff.outbox WHERE person_id = ANY($1)", person_ids),
        tuple(
            await db.fetch(
                "SELECT id, attached_at FROM bff.uploads WHERE person_id = ANY($1) ORDER BY id", person_ids
            )
        ),
        await db.fetchval(
            "SELECT count(*) FROM sandbox.hotline_tickets WHERE caller ->> 'ref' = ANY($1)", person_ids
        ),
        await db.fetchval(
            "SELECT count(*) FROM sandbox.hotline_events e JOIN sandbox.hotline_tickets t USING (ticket_no) WHERE t.caller ->> 'ref' = ANY($1)",
            person_ids,
        ),
    )


async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, level=3)
    other = await login_resident(client, sandbox, level=3)
    others_upload = await upload(client, other)
    theirs = (await file(client, other, complaint())).json()
    asked = await control(sandbox, theirs["ticketNo"], "dispatch")
    await control(sandbox, theirs["ticketNo"], "start")
    asked = await control(sandbox, theirs["ticketNo"], "ask", questions=["请上传现场照片"])
    await shows(client, other, theirs["id"], "info_requested")
    before = await everything(db, [who["person_id"], other["person_id"]])

    async def refused(response: httpx.Response, status: int, code: str, field: str | None = None) -> None:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
        if field is not None:
            assert field in response.text

    await refused(await file(client, who, complaint(text="投" * 2001)), 422, "hotline_text_too_long", "text")
    await refused(await file(client, who, complaint(text="太短")), 422, "hotline_text_too_short")
    await refused(await file(client, who, complaint(text="投" * 400_000)), 413, "payload_too_large")
    await refused(await file(client, who, complaint(kind="gossip")), 400, "validation_failed", "kind")
    await refused(await file(client, who, complaint(extra=1)), 400, "validation_failed", "extra")
    await refused(
        await file(client, who, complaint(attachments=[others_upload])),
        422,
        "hotline_attachment_invalid",
        "attachments[0]",
    )
    await refused(
        await file(client, who, complaint(attachments=["00000000-0000-0000-0000-000000000000"])),
        422,
        "hotline_attachment_invalid",
    )
    await refused(
        await file(client, who, complaint(kind="consultation", anonymous=True)),
        422,
        "hotline_anonymity_not_allowed",
    )
    await refused(
        await file(client, who, complaint(location={"regionCode": "110101"})), 422, "hotline_location_invalid"
    )
    await refused(await file(client, who, complaint(caseId=theirs["id"])), 404, "case_not_found")
    # Another resident's ticket: read, answered or rated, it does not exist for me.
    await refused(
        await client.get(f"/api/v1/hotline/tickets/{theirs['id']}", headers=auth(who)),
        404,
        "hotline_ticket_not_found",
    )
    await refused(
        await client.post(
            f"/api/v1/hotline/tickets/{theirs['id']}/replies",
            json={"infoRequestId": asked["data"]["info_request_id"], "text": "这是别人的工单"},
            headers=auth(who, key()),
        ),
        404,
        "hotline_ticket_not_found",
    )
    await refused(
        await client.post(
            f"/api/v1/hotline/tickets/{theirs['id']}/rating",
            json={"satisfaction": "dissatisfied", "resolved": False},
            headers=auth(who, key()),
        ),
        404,
        "hotline_ticket_not_found",
    )
    await refused(
        await client.get("/api/v1/hotline/tickets/not-a-uuid", headers=auth(who)),
        404,
        "hotline_ticket_not_found",
    )
    # My own ticket, bad answers: an unknown request for information, oversized text.
    await refused(
        await client.post(
            f"/api/v1/hotline/tickets/{theirs['id']}/replies",
            json={"infoRequestId": "IR-NOT-ASKED", "text": "现场照片已上传"},
            headers=auth(other, key()),
        ),
        409,
        "hotline_no_open_info_request",
    )
    await refused(
        await client.post(
            f"/api/v1/hotline/tickets/{theirs['id']}/replies",
            json={"infoRequestId": asked["data"]["info_request_id"], "text": "图" * 2001},
            headers=auth(other, key()),
        ),
        422,
        "hotline_text_too_long",
    )

    assert await everything(db, [who["person_id"], other["person_id"]]) == before
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE subject = $1 AND object = $2 AND result = 'denied_not_owner'",
            who["person_id"],
            f"hotline_ticket:{theirs['id']}",
        )
        == 3
    )


async def test_forged_webhooks_are_refused_and_dropped_ones_come_from_the_feed(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(client, sandbox, level=2)
    made = (await file(client, who, complaint())).json()
    no = made["ticketNo"]
    forged = await client.post(
        NOTIFY,
        content=b'{"event_id":"HEFAKE"}',
        headers={
            "X-Hotline-Timestamp": str(int(time.time())),
            "X-Hotline-Signature": "sha256=00",
            "X-Hotline-Event-Id": "HEFAKE",
            "Content-Type": "application/json",
        },
    )
    assert forged.status_code == 401 and forged.json()["code"] == "hotline_callback_rejected"
    unsigned = await client.post(NOTIFY, json={"event_id": "HEFAKE"})
    assert unsigned.status_code == 401
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.audit_log WHERE action = 'hotline.callback' AND object = 'hotline-event:HEFAKE'"
        )
        >= 1
    )

    await sandbox.put("/_control/hotline/config", json={"drop_webhooks": True})
    try:
        # The feed cursor is already past these steps' neighbours: the look-back still finds them.
        root = client.app.state.root  # type: ignore[attr-defined]
        await root.hotline.reconcile(max_pages=200, page_size=500)
        dispatched = await control(sandbox, no, "dispatch")
        started = await control(sandbox, no, "start")
        await db.execute(
            "UPDATE bff.sync_cursors SET position = $1 WHERE name = 'hotline.changes'", started["seq"] + 3
        )
        await asyncio.sleep(0.3)
        seen = await ticket(client, who, made["id"])
        assert [t["kind"] for t in seen["timeline"]] == ["accepted"]  # nothing came by webhook
        assert await root.hotline.reconcile() >= 2
        assert await root.hotline.reconcile() == 0  # read again: duplicates, nothing new
    finally:
        await sandbox.put("/_control/hotline/config", json={"drop_webhooks": False})
    seen = await ticket(client, who, made["id"])
    assert [t["kind"] for t in seen["timeline"]] == ["accepted", "dispatched", "started"]
    assert seen["status"] == "in_progress" and seen["departmentName"]
    assert await told(db, who["person_id"]) == ["dispatched"]
    assert dispatched["event_id"] in {
        r["event_id"] for r in await db.fetch("SELECT event_id FROM bff.hotline_events WHERE via = 'feed'")
    }


def signed(event: dict[str, Any], *, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """A step exactly as 12345 signs it (sandbox/webhooks.py)."""
    body = json.dumps(event).encode()
    stamp = str(at if at is not None else int(time.time()))
    digest = hmac.new(b"sandbox-hotline-secret", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-Hotline-Event-Id": event["event_id"],
        "X-Hotline-Timestamp": stamp,
        "X-Hotline-Signature": f"sha256={digest}",
    }


async def test_one_step_arriving_many_times_at_once_is_applied_and_told_once(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await ensure_mirror(services, sandbox_url)
    client = await make_client(**hotline_settings(sandbox_url))  # no webhooks: this test delivers them
    who = await login_resident(client, sandbox, level=2)
    made = (await file(client, who, complaint())).json()
    event = await control(sandbox, made["ticketNo"], "dispatch")
    body, headers = signed(event)
    root = client.app.state.root  # type: ignore[attr-defined]
    deliveries = [client.post(NOTIFY, content=body, headers=headers) for _ in range(12)]
    answers = await asyncio.gather(*deliveries, root.hotline.reconcile(max_pages=200, page_size=500))
    outcomes = sorted(a.json()["outcome"] for a in answers[:-1])
    via = await db.fetchval("SELECT via FROM bff.hotline_events WHERE event_id = $1", event["event_id"])
    assert outcomes.count("applied") == (1 if via == "callback" else 0), (via, outcomes)
    assert set(outcomes) <= {"applied", "duplicate"} and via in {"callback", "feed"}
    assert await told(db, who["person_id"]) == ["dispatched"]
    assert (
        await db.fetchval("SELECT count(*) FROM bff.hotline_events WHERE event_id = $1", event["event_id"])
        == 1
    )
    seen = await ticket(client, who, made["id"])
    assert seen["status"] == "dispatched" and [t["kind"] for t in seen["timeline"]] == [
        "accepted",
        "dispatched",
    ]
    # A stale delivery (a replay outside the window) changes nothing and is refused.
    stale_body, stale = signed(event, at=int(time.time()) - 301)
    replay = await client.post(NOTIFY, content=stale_body, headers=stale)
    assert replay.status_code == 401 and replay.json()["code"] == "hotline_callback_rejected"


async def test_a_filing_whose_answer_was_lost_is_completed_once_by_the_resolver_or_a_retry(
    make_client: Any, services: Any, sandbox_url: str, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    await ensure_mirror(services, sandbox_url)
    client = await make_client(**hotline_settings(sandbox_url, upstream_max_retries=0))
    root = client.app.state.root  # type: ignore[attr-defined]
    who = await login_resident(client, sandbox, level=2)
    other = await login_resident(client, sandbox, level=2)
    # 12345 answers nothing usable: the outcome is unknown, the resident is told so.
    await sandbox.put("/_control/faults/hotline", json={"errorRate": 1.0, "errorKind": "500"})
    idem, lost = key(), key()
    failed = await file(client, who, complaint(), idem)
    assert failed.status_code in (502, 503) and failed.json()["code"] in (
        "upstream_unavailable",
        "bad_upstream_answer",
    )
    assert (await file(client, other, complaint(), lost)).status_code in (502, 503)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM bff.hotline_tickets WHERE person_id = ANY($1) AND status = 'filing'",
            [who["person_id"], other["person_id"]],
        )
        == 2
    )
    assert (await client.get("/api/v1/hotline/tickets", headers=auth(who))).json()["items"] == []
    await sandbox.delete("/_control/faults")

    # A retry of the key sends the same filing: one ticket, at 12345 and here.
    retried = await file(client, who, complaint(), idem)
    assert retried.status_code == 201, retried.text
    # Nobody retries the other: the worker's resolver completes it with the same bytes.
    assert await root.hotline.resolve_filing(older_than_s=0) == 1
    assert await root.hotline.resolve_filing(older_than_s=0) == 0
    for person in (who, other):
        mine = (await client.get("/api/v1/hotline/tickets", headers=auth(person))).json()["items"]
        assert len(mine) == 1 and mine[0]["status"] == "accepted" and mine[0]["ticketNo"]
        at_12345 = await sandbox.get(
            "/hotline/v1/tickets", params={"caller_ref": person["person_id"]}, headers=CHANNEL
        )
        assert [t["ticket_no"] for t in at_12345.json()["tickets"]] == [mine[0]["ticketNo"]]
    again = await file(client, other, complaint(), lost)
    assert again.status_code == 201 and again.json()["ticketNo"] == mine[0]["ticketNo"]


async def test_home_lists_tickets_awaiting_the_residents_rating_until_rated(
    client: httpx.AsyncClient, sandbox: httpx.AsyncClient
) -> None:
    who = await login_resident(client, sandbox, channel="app", level=2)
    filed = await file(client, who, complaint())
    assert filed.status_code == 201, filed.text
    ticket_id, no = filed.json()["id"], filed.json()["ticketNo"]

    async def section() -> dict[str, Any]:
        answer = await client.get("/api/v1/home", headers=auth(who))
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()["sections"]["hotline"]
        return found

    assert (await section())["total"] == 0  # filed and being handled: nothing for the resident to do
    await control(sandbox, no, "dispatch")
    await control(sandbox, no, "start")
    await control(sandbox, no, "feedback", answer="已责成网点恢复营业。")
    await shows(client, who, ticket_id, "feedback_given")
    todo = await section()
    assert todo["status"] == "ok" and todo["total"] == 1
    assert [(i["ticketId"], i["ticketNo"], i["link"]) for i in todo["items"]] == [
        (ticket_id, no, f"/hotline/tickets/{ticket_id}")
    ]
    assert todo["items"][0]["answeredAt"].endswith("+08:00")
    home = (await client.get("/api/v1/home", headers=auth(who))).json()
    assert "hotline" in home["order"]
    assert (await client.get("/api/v1/home/badges", headers=auth(who))).json()["todos"]["count"] >= 1

    rated = await client.post(
        f"/api/v1/hotline/tickets/{ticket_id}/rating",
        json={"satisfaction": "satisfied", "resolved": True},
        headers=auth(who, key()),
    )
    assert rated.status_code == 201, rated.text
    gone = await section()
    assert gone["status"] == "ok" and gone["total"] == 0 and gone["items"] == []
