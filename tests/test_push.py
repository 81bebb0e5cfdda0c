"""Notifications end to end: outbox -> relay -> Redis stream -> consumer -> channels -> the sandbox
providers (WeChat subscribe, push gateway, SMS), the inbox and live SSE on another replica.

The relay and a consumer run as tasks on the test's loop against the app's own root (what
`sanxiang worker` runs); the providers are the sandbox over real HTTP and record what they got.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, get_args

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn
from redis.asyncio import Redis

from adapters.courier.schemas import CourierStatus
from adapters.tasks import cancel
from bff.app import create_app
from bff.hotline.service import HOTLINE_NOTIFIED
from bff.payments.schemas import PaymentStatus
from push import outbox
from push.stream import GROUP, STREAM, claimed_entries, ensure_group
from push.templates import SMS_PARAM_MAX, SMS_SEGMENT, STATUS_ZH, render, sms_text
from push.topics import (
    PAYLOADS,
    AppointmentChanged,
    AppointmentReminder,
    CaseChanged,
    DeliveryChanged,
    HotlineChanged,
    LicenceExpiring,
    MandateChanged,
    PaymentChanged,
    WaitlistOffer,
)
from sandbox.wechat.routes import SUBSCRIBE_TEMPLATES, keyword_error
from tests.auth_helpers import login_resident
from tests.conftest import free_port, make_settings
from tests.test_journey_helpers import (
    advance,
    apply,
    auth,
    book,
    bookable_item,
    deliver,
    first_slot,
    key,
    upstream_urls,
)

SUPPLEMENT_TMPL = "sxSupplement-0003-OneTimeTemplateBuZheng003"
PROGRESS_TMPL = "sxCaseProgress-0001-LongTermGovServiceTmpl01"
SHIPMENT_TMPL = "sxShipment-0002-LongTermGovServiceTemplate2"


def overrides(sandbox_url: str, **extra: Any) -> dict[str, Any]:
    return {
        **upstream_urls(sandbox_url),
        "pushgw_url": f"{sandbox_url}/pushgw",
        "sms_url": f"{sandbox_url}/sms",
        "push_relay_poll_s": 0.2,
        "push_claim_idle_s": 1.0,
        "push_republish_after_s": 2.0,
        "push_lease_s": 2.0,
        **extra,
    }


@contextlib.asynccontextmanager
async def pipeline(client: httpx.AsyncClient) -> AsyncIterator[Any]:
    """The worker's push loops (relay + one consumer) on this app's root, for the block."""
    root = client.app.state.root  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(root.relay.run()), asyncio.create_task(root.consumer.run())]
    try:
        yield root
    finally:
        assert not await cancel(tasks), "a push loop did not stop"


@pytest.fixture
async def app_client(make_client: Any, sandbox_url: str) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(**overrides(sandbox_url))
    return client


async def sub_consent(
    client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    who: dict[str, Any],
    results: dict[str, str],
    *,
    bff: bool = True,
) -> None:
    """The resident answered wx.requestSubscribeMessage: WeChat records it, the mini-program tells us."""
    answer = await sandbox.post(
        "/_control/wechat/subscribe/consents", json={"openid": who["openid"], "results": results}
    )
    assert answer.status_code == 200, answer.text
    if bff:
        mine = await client.post(
            "/api/v1/push/wechat/subscriptions", json={"results": results}, headers=auth(who, key())
        )
        assert mine.status_code == 200, mine.text


async def install_app(client: httpx.AsyncClient, sandbox: httpx.AsyncClient, who: dict[str, Any]) -> str:
    installed = await sandbox.post(
        "/_control/pushgw/devices", json={"devices": [{"platform": "android", "personRef": who["person_id"]}]}
    )
    token: str = installed.json()["devices"][0]["token"]
    registered = await client.post(
        "/api/v1/push/devices",
        json={"token": token, "platform": "android", "appVersion": "3.2.0"},
        headers=auth(who, key()),
    )
    assert registered.status_code == 201, registered.text
    return token


async def event(
    db: asyncpg.Connection,
    person_id: str,
    kind: str = "supplement_requested",
    status: str = "awaiting_supplement",
) -> int:
    """A case change written to the outbox the way the case domain does, in a transaction."""
    dedup = f"test-event:{uuid.uuid4()}"
    # The app's pool has a jsonb codec; the test's plain connection gets the same.
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    async with db.transaction():
        await outbox.enqueue(
            db,
            "case.changed",
            person_id,
            dedup,
            CaseChanged(
                case_id=str(uuid.uuid4()),
                project_no="SX" + uuid.uuid4().hex[:12].upper(),
                item_name="城乡居民基本养老保险参保登记",
                event=kind,
                status=status,
                result=None,
                occurred_at="2026-12-01T10:00:00+08:00",
            ),
        )
    row_id: int = await db.fetchval("SELECT id FROM bff.outbox WHERE dedup_key = $1", dedup)
    return row_id


async def emit(db: asyncpg.Connection, person_id: str, payload: msgspec.Struct) -> int:
    """Any topic's event written to the outbox the way its domain does, in a transaction."""
    topic = next(t for t, kind in PAYLOADS.items() if isinstance(payload, kind))
    dedup = f"test-{topic}:{uuid.uuid4()}"
    await db.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    async with db.transaction():
        await outbox.enqueue(db, topic, person_id, dedup, payload)  # type: ignore[arg-type]
    row_id: int = await db.fetchval("SELECT id FROM bff.outbox WHERE dedup_key = $1", dedup)
    return row_id


def payment_changed(status: str) -> PaymentChanged:
    return PaymentChanged(
        payment_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        status=status,
        amount_fen=1550,
        refunded_fen=0,
        occurred_at="2026-12-01T10:00:00+08:00",
    )


def delivery_changed(status: str, waybill_no: str | None = "SF1234567890") -> DeliveryChanged:
    return DeliveryChanged(
        delivery_id=str(uuid.uuid4()),
        case_id=str(uuid.uuid4()),
        project_no="4300002026120155495301",
        item_name="中华人民共和国机动车驾驶证期满换证（含体检信息）",
        waybill_no=waybill_no,
        status=status,
        place="430104 投递部",
        occurred_at="2026-12-01T10:00:00+08:00",
    )


def every_event() -> list[msgspec.Struct]:
    """One payload per topic and status (or event) its domain can write."""
    at = "2026-12-03T09:00:00+08:00"
    booking = {"appointment_id": str(uuid.uuid4()), "item_code": "016950108003", "hall_id": "H430000-01"}
    made: list[msgspec.Struct] = [
        CaseChanged(
            case_id=str(uuid.uuid4()),
            project_no="4300002026120155495301",
            item_name="城乡居民基本养老保险参保登记",
            event=kind,
            status=status,
            result=None,
            occurred_at=at,
        )
        for status in STATUS_ZH
        for kind in ("step", "supplement_requested")
    ]
    made += [
        AppointmentChanged(**booking, starts_at=at, booking_no="BK1", event=e)
        for e in ("booked", "rescheduled", "cancelled")
    ]
    made += [AppointmentReminder(**booking, starts_at=at, booking_no="BK1")]
    made += [
        WaitlistOffer(
            entry_id=str(uuid.uuid4()),
            hold_id=str(uuid.uuid4()),
            slot_id="H430000-01.016950108003.20261203.0900",
            item_code=booking["item_code"],
            hall_id=booking["hall_id"],
            starts_at=at,
            expires_at="2026-12-02T10:15:00+08:00",
        )
    ]
    made += [payment_changed(status) for status in get_args(PaymentStatus)]
    made += [delivery_changed(status) for status in get_args(CourierStatus)]
    made += [delivery_changed("created", waybill_no=None)]
    made += [
        LicenceExpiring(
            licence_id="EL0123456789ABCDEF",
            type_name="居民身份证",
            valid_to="2027-01-30",
            days_left=60,
            threshold=90,
        )
    ]
    made += [
        HotlineChanged(
            ticket_id=str(uuid.uuid4()),
            ticket_no="RX20261201000042",
            kind="complaint",
            event=event,
            status=status,
            department_name=department,
            deadline_at="2026-12-08T18:00:00+08:00" if department else None,
            occurred_at=at,
        )
        for event, status in HOTLINE_NOTIFIED.items()
        for department in ("长沙市人力资源和社会保障局", None)
    ] + [
        MandateChanged(
            mandate_id=str(uuid.uuid4()),
            event=event,
            status=event,
            agent_name="张*",
            action="read_cases" if event == "used" else None,
            occurred_at=at,
        )
        for event in ("accepted", "revoked", "used")
    ]
    return made


def test_every_topic_and_status_renders_in_both_languages_within_the_providers_rules() -> None:
    events = every_event()
    assert {type(e) for e in events} == set(PAYLOADS.values()), "a topic is missing from this test"
    offenders = []
    for e in events:
        topic = next(t for t, kind in PAYLOADS.items() if isinstance(e, kind))
        payload = msgspec.to_builtins(e)
        for lang in ("zh", "en"):
            r = render(topic, payload, lang)  # type: ignore[arg-type]
            text = f"{r.title} {r.body}"
            if "{" in text or "有更新" in text or " updated" in text or not r.link.startswith("/"):
                offenders.append(f"{topic} {payload.get('status')} {lang}: {text} -> {r.link}")
        if r.wechat_template:
            template = SUBSCRIBE_TEMPLATES[r.wechat_template]
            if set(r.wechat_data) != set(template.keywords):
                offenders.append(f"{topic}: keywords {sorted(r.wechat_data)} for {r.wechat_template}")
            offenders += [
                f"{topic} {payload.get('status')}: {why}"
                for key, value in r.wechat_data.items()
                if (why := keyword_error(key, value))
            ]
        if r.sms_template:
            # Every variable within the carrier's 35; over one segment only once the item name is
            # cut as short as it may be (a 22-digit case number leaves the 补正 text no room).
            text = sms_text(r.sms_template, r.sms_params)
            if any(len(v) > SMS_PARAM_MAX for v in r.sms_params.values()) or (
                len(text) > SMS_SEGMENT and len(r.sms_params.get("item", "")) > 7
            ):
                offenders.append(f"{topic}: SMS {len(text)} characters: {text}")
    assert offenders == [], "\n".join(offenders)


async def notification(
    db: asyncpg.Connection, outbox_id: int, *, final: bool = True, seconds: float = 10.0
) -> asyncpg.Record:
    deadline = time.monotonic() + seconds
    row = None
    while time.monotonic() < deadline:
        row = await db.fetchrow("SELECT * FROM bff.notifications WHERE outbox_id = $1", outbox_id)
        if row is not None and (not final or (row["status"] not in ("created",) and row["next_at"] is None)):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"notification of outbox row {outbox_id} not ready: {row and dict(row)}")


async def attempts(db: asyncpg.Connection, nid: Any) -> dict[str, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM bff.notification_attempts WHERE notification_id = $1", nid)
    return {r["channel"]: r for r in rows}


async def wechat_sent(sandbox: httpx.AsyncClient, openid: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/wechat/subscribe/messages", params={"openid": openid})).json())


async def wechat_requests(sandbox: httpx.AsyncClient, openid: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/wechat/subscribe/requests", params={"openid": openid})).json())


async def push_sent(sandbox: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/pushgw/messages", params={"token": token})).json())


async def sms_sent(sandbox: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    return list((await sandbox.get("/_control/sms/messages", params={"phone": phone})).json())


@contextlib.asynccontextmanager
async def served(settings_overrides: dict[str, Any], services: Any, sandbox_url: str) -> AsyncIterator[str]:
    """Another API replica, over real HTTP (SSE needs a streaming server)."""
    app = create_app(make_settings(services, sandbox_url, **settings_overrides), configure_logs=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def read_sse(url: str, who: dict[str, Any], into: list[dict[str, Any]], ready: asyncio.Event) -> None:
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http,
        http.stream("GET", f"{url}/api/v1/messages/stream", headers=auth(who)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        ready.set()
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line == "":
                if "data" in fields:
                    into.append(
                        {"id": fields.get("id"), "event": fields.get("event"), **json.loads(fields["data"])}
                    )
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.strip()


# --- end to end ---------------------------------------------------------------------------------


async def test_a_supplement_request_reaches_inbox_sse_on_another_replica_and_wechat_within_a_second(
    app_client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    services: Any,
    sandbox_url: str,
) -> None:
    who = await login_resident(app_client, sandbox, level=3)
    await sub_consent(app_client, sandbox, who, {SUPPLEMENT_TMPL: "accept"})
    case = await apply(app_client, who, await bookable_item(db))
    project_no = case["case"]["projectNo"]
    assert (await deliver(app_client, await advance(sandbox, project_no, "accept"))).status_code == 200
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()
    async with served(overrides(sandbox_url), services, sandbox_url) as other, pipeline(app_client):
        reader = asyncio.create_task(read_sse(other, who, seen, ready))
        try:
            await asyncio.wait_for(ready.wait(), 10)
            # Earlier tests of the session left outbox rows: the 1 s is measured on a drained pipeline.
            for _ in range(600):
                if not await db.fetchval("SELECT count(*) FROM bff.outbox WHERE delivered_at IS NULL"):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # the 'accepted' notice may still be in flight: let it pass
            seen.clear()
            request = await advance(
                sandbox, project_no, "request_supplement", items=["申请表签字页"], opinion="缺签字"
            )
            started = time.monotonic()
            assert (await deliver(app_client, request)).status_code == 200
            inbox_at = sse_at = wechat_at = None
            while time.monotonic() - started < 1.0 and None in (inbox_at, sse_at, wechat_at):
                if inbox_at is None:
                    page = (await app_client.get("/api/v1/messages", headers=auth(who))).json()
                    if any(m["category"] == "action_needed" for m in page["items"]):
                        inbox_at = time.monotonic() - started
                if sse_at is None and any(m["category"] == "action_needed" for m in seen):
                    sse_at = time.monotonic() - started
                if wechat_at is None and any(
                    m["templateId"] == SUPPLEMENT_TMPL for m in await wechat_sent(sandbox, who["openid"])
                ):
                    wechat_at = time.monotonic() - started
                await asyncio.sleep(0.02)
        finally:
            await cancel([reader])
    assert None not in (inbox_at, sse_at, wechat_at), (inbox_at, sse_at, wechat_at)
    print(
        f"\ninbox {inbox_at:.3f}s, SSE on the other replica {sse_at:.3f}s, subscribe message {wechat_at:.3f}s"
    )
    page = (await app_client.get("/api/v1/messages", headers=auth(who))).json()
    action = [m for m in page["items"] if m["category"] == "action_needed"]
    assert len(action) == 1 and page["unreadCount"] >= 1
    assert project_no in action[0]["body"] and action[0]["link"].startswith("/cases/")
    assert (await app_client.get("/api/v1/messages", headers=auth(who))).headers[
        "cache-control"
    ] == "no-store"
    # Exactly one subscribe message for the 补正 (the one-time accept is used up) and nothing else.
    sent = [m for m in await wechat_sent(sandbox, who["openid"]) if m["templateId"] == SUPPLEMENT_TMPL]
    assert len(sent) == 1 and sent[0]["consent"] == "one_time"
    assert sent[0]["data"]["character_string2"]["value"] == project_no
    detail = (await app_client.get(f"/api/v1/messages/{action[0]['id']}", headers=auth(who))).json()
    assert [(c["channel"], c["status"]) for c in detail["channels"]] == [
        ("inbox", "delivered"),
        ("wechat", "delivered"),
    ]
    # Read it: unread goes down, and a replay of the same key answers the same.
    k = key()
    read = await app_client.post(f"/api/v1/messages/{action[0]['id']}/read", headers=auth(who, k))
    assert read.status_code == 200 and read.json()["read"] is True
    again = await app_client.post(f"/api/v1/messages/{action[0]['id']}/read", headers=auth(who, k))
    assert again.content == read.content


async def test_43101_falls_back_to_app_push_and_zeroes_the_consent(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    # We think the resident accepted; WeChat says otherwise (consent spent elsewhere): 43101.
    await sub_consent(app_client, sandbox, who, {SUPPLEMENT_TMPL: "reject"}, bff=False)
    mine = await app_client.post(
        "/api/v1/push/wechat/subscriptions",
        json={"results": {SUPPLEMENT_TMPL: "accept"}},
        headers=auth(who, key()),
    )
    assert mine.status_code == 200
    token = await install_app(app_client, sandbox, who)
    async with pipeline(app_client):
        n = await notification(db, await event(db, who["person_id"]))
    tried = await attempts(db, n["id"])
    assert tried["wechat"]["status"] == "permanent-failure" and tried["wechat"]["reason"] == "43101"
    assert tried["app"]["status"] == "sending" and "sms" not in tried
    assert [r["errcode"] for r in await wechat_requests(sandbox, who["openid"])] == [43101]
    assert len(await push_sent(sandbox, token)) == 1
    assert (
        await db.fetchval("SELECT remaining FROM bff.wechat_consents WHERE openid = $1", who["openid"]) == 0
    )


async def test_an_unregistered_token_is_pruned_and_the_message_goes_by_sms(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    assert (await sandbox.delete(f"/_control/pushgw/devices/{token}")).status_code == 200  # app uninstalled
    async with pipeline(app_client):
        n = await notification(db, await event(db, who["person_id"]))
    tried = await attempts(db, n["id"])
    assert "wechat" not in tried  # no consent: not tried at all
    assert tried["app"]["status"] == "permanent-failure" and tried["sms"]["status"] == "sending"
    assert (
        await db.fetchval("SELECT pruned_reason FROM bff.push_devices WHERE token = $1", token)
        == "UNREGISTERED"
    )
    texts = await sms_sent(sandbox, who["resident"]["phone_number"])
    assert len(texts) == 1 and texts[0]["templateCode"] == "SMS_460100001"
    assert len(texts[0]["text"]) <= 70  # one segment
    assert await push_sent(sandbox, token) == []


async def test_signed_receipts_end_attempts_and_a_failed_push_falls_back(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    async with pipeline(app_client):
        n = await notification(db, await event(db, who["person_id"]))
        app = (await attempts(db, n["id"]))["app"]
        receipt = msgspec.json.encode(
            {
                "message_id": app["provider_ref"],
                "request_id": app["send_key"] + ":abc",
                "status": "failed",
                "reason": "UNREGISTERED",
                "at": "2026-12-01T00:00:00Z",
            }
        )
        stamp = str(int(time.time()))
        good = (
            "sha256="
            + hmac.new(b"sandbox-pushgw-secret", stamp.encode() + b"." + receipt, hashlib.sha256).hexdigest()
        )
        headers = {"Content-Type": "application/json", "X-Pushgw-Timestamp": stamp}
        forged = await app_client.post(
            "/api/v1/push/pushgw/notify",
            content=receipt,
            headers={**headers, "X-Pushgw-Signature": "sha256=" + "0" * 64},
        )
        assert forged.status_code == 401 and forged.json()["code"] == "push_callback_rejected"
        first = await app_client.post(
            "/api/v1/push/pushgw/notify", content=receipt, headers={**headers, "X-Pushgw-Signature": good}
        )
        repeat = await app_client.post(
            "/api/v1/push/pushgw/notify", content=receipt, headers={**headers, "X-Pushgw-Signature": good}
        )
        assert first.json() == {"outcome": "applied"} and repeat.json() == {"outcome": "duplicate"}
        tried = await attempts(db, n["id"])
        assert tried["app"]["status"] == "permanent-failure" and tried["sms"]["status"] == "sending"
        assert await db.fetchval("SELECT pruned_at IS NOT NULL FROM bff.push_devices WHERE token = $1", token)
        # The SMS report (signed like the requests) ends it: delivered.
        report = msgspec.json.encode(
            [
                {
                    "biz_id": tried["sms"]["provider_ref"],
                    "out_id": tried["sms"]["send_key"],
                    "success": True,
                    "err_code": "DELIVERED",
                }
            ]
        )
        sign = (
            "sha256="
            + hmac.new(b"sandbox-sms-secret", stamp.encode() + b"." + report, hashlib.sha256).hexdigest()
        )
        acked = await app_client.post(
            "/api/v1/push/sms/notify",
            content=report,
            headers={"Content-Type": "application/json", "X-Sms-Timestamp": stamp, "X-Sms-Signature": sign},
        )
        assert acked.status_code == 200 and acked.json()["code"] == 0
    final = await db.fetchrow("SELECT status FROM bff.notifications WHERE id = $1", n["id"])
    assert final["status"] == "delivered"
    assert len(await sms_sent(sandbox, who["resident"]["phone_number"])) == 1


# --- preferences, quiet hours, consent ----------------------------------------------------------


async def test_a_channel_switched_off_gets_nothing_and_the_inbox_of_action_needed_stays_on(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    locked = await app_client.put(
        "/api/v1/me/notification-preferences",
        json={"channels": {"action_needed": {"inbox": False}}},
        headers=auth(who, key()),
    )
    assert locked.status_code == 422 and locked.json()["code"] == "preference_locked"
    put = await app_client.put(
        "/api/v1/me/notification-preferences",
        json={
            "lang": "en",
            "channels": {
                "action_needed": {"app": False},
                "case_progress": {"app": False, "sms": False, "inbox": False},
            },
        },
        headers=auth(who, key()),
    )
    assert put.status_code == 200, put.text
    prefs = (await app_client.get("/api/v1/me/notification-preferences", headers=auth(who))).json()
    assert (
        prefs["channels"]["action_needed"]["app"] is False
        and prefs["channels"]["action_needed"]["inbox"] is True
    )
    assert "action_needed/inbox" in prefs["locked"]
    logged = await db.fetch(
        "SELECT kind, subject, value, channel FROM bff.consent_log WHERE person_id = $1 AND kind = 'preference'",
        who["person_id"],
    )
    assert {(r["subject"], r["value"]) for r in logged} == {
        ("action_needed/app", "off"),
        ("case_progress/app", "off"),
        ("case_progress/sms", "off"),
        ("case_progress/inbox", "off"),
    }
    assert {r["channel"] for r in logged} == {"miniprogram"}
    async with pipeline(app_client):
        urgent = await notification(db, await event(db, who["person_id"]))
        progress = await notification(db, await event(db, who["person_id"], "step", "in_progress"))
    assert set(await attempts(db, urgent["id"])) == {"inbox", "sms"}  # app off: straight to SMS
    assert urgent["lang"] == "en" and urgent["title"] == "Documents needed"
    assert await attempts(db, progress["id"]) == {} and progress["in_inbox"] is False  # everything off
    assert await push_sent(sandbox, token) == []
    assert len(await sms_sent(sandbox, who["resident"]["phone_number"])) == 1


async def test_quiet_hours_hold_what_is_not_urgent_until_they_end(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    china_now = time.gmtime(time.time() + 8 * 3600)
    start = f"{china_now.tm_hour:02d}:00"
    end = f"{(china_now.tm_hour + 2) % 24:02d}:00"
    put = await app_client.put(
        "/api/v1/me/notification-preferences",
        json={"quietStart": start, "quietEnd": end},
        headers=auth(who, key()),
    )
    assert put.status_code == 200, put.text
    async with pipeline(app_client):
        progress_id = await event(db, who["person_id"], "step", "in_progress")
        urgent = await notification(db, await event(db, who["person_id"]))
        held = await notification(db, progress_id, final=False)
        await asyncio.sleep(0.5)
        held = await db.fetchrow("SELECT * FROM bff.notifications WHERE id = $1", held["id"])
        assert held["status"] == "created" and held["next_at"] is not None
        assert set(await attempts(db, held["id"])) == {"inbox"}
        assert set(await attempts(db, urgent["id"])) == {"inbox", "app"}  # urgent ignores quiet hours
        # Quiet hours end (the sweep picks it up when next_at passes).
        off = await app_client.put("/api/v1/me/notification-preferences", json={}, headers=auth(who, key()))
        assert off.status_code == 200
        await db.execute("UPDATE bff.notifications SET next_at = now() WHERE id = $1", held["id"])
        released = await notification(db, progress_id)
    assert released["status"] == "sending" and set(await attempts(db, released["id"])) == {"inbox", "app"}
    assert len(await push_sent(sandbox, token)) == 2


async def test_a_one_time_accept_is_used_exactly_once_even_under_concurrency(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    await sub_consent(app_client, sandbox, who, {SUPPLEMENT_TMPL: "accept"})
    await sub_consent(app_client, sandbox, who, {SUPPLEMENT_TMPL: "accept"})  # two accepts: two messages
    # The other three fall back to SMS: lift the per-phone limit for them (tested below).
    await sandbox.put("/_control/sms/config", json={"perMinute": 100, "perHour": 100, "perDay": 100})
    try:
        async with pipeline(app_client):
            ids = [await event(db, who["person_id"]) for _ in range(5)]
            made = [await notification(db, i) for i in ids]
    finally:
        await sandbox.put("/_control/sms/config", json={})
    wechat = [n for n in made if "wechat" in await attempts(db, n["id"])]
    assert len(wechat) == 2
    assert len(await wechat_sent(sandbox, who["openid"])) == 2
    assert [r["errcode"] for r in await wechat_requests(sandbox, who["openid"])] == [
        0,
        0,
    ]  # never asked a third time
    assert (
        await db.fetchval("SELECT remaining FROM bff.wechat_consents WHERE openid = $1", who["openid"]) == 0
    )


async def test_subscriptions_need_a_mini_program_session_and_known_templates(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox, channel="app")
    refused = await app_client.post(
        "/api/v1/push/wechat/subscriptions",
        json={"results": {SUPPLEMENT_TMPL: "accept"}},
        headers=auth(who, key()),
    )
    assert refused.status_code == 403
    mini = await login_resident(app_client, sandbox)
    unknown = await app_client.post(
        "/api/v1/push/wechat/subscriptions", json={"results": {"nope": "accept"}}, headers=auth(mini, key())
    )
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_template"
    ok = await app_client.post(
        "/api/v1/push/wechat/subscriptions",
        json={"results": {PROGRESS_TMPL: "accept", SUPPLEMENT_TMPL: "ban"}},
        headers=auth(mini, key()),
    )
    consents = {c["templateId"]: c for c in ok.json()["consents"]}
    assert consents[PROGRESS_TMPL]["longTerm"] is True and consents[SUPPLEMENT_TMPL]["remaining"] == 0
    logged = await db.fetchval(
        "SELECT count(*) FROM bff.consent_log WHERE person_id = $1 AND kind = 'wechat_subscribe'",
        mini["person_id"],
    )
    assert logged == 2


# --- exactly once under republishing, reclaiming and lost streams -------------------------------


async def test_a_republished_event_and_a_reclaimed_entry_send_nothing_twice(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    async with pipeline(app_client) as root:
        row = await event(db, who["person_id"])
        first = await notification(db, row)
        # The outbox forgets it finished (as if Redis had lost the stream): published again.
        await db.execute(
            "UPDATE bff.outbox SET delivered_at = NULL, published_at = now() - interval '1 hour' WHERE id = $1",
            row,
        )
        await root.relay.republish_stale()
        # And a dead consumer's pending copy, claimed by the live one.
        await ensure_group(redis)
        await redis.xadd(STREAM, {"id": str(row)})
        await redis.xreadgroup(GROUP, "dead-consumer", {STREAM: ">"}, count=100)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pending = await redis.xpending_range(
                STREAM, GROUP, min="-", max="+", count=100, consumername="dead-consumer"
            )
            if not pending and await db.fetchval(
                "SELECT delivered_at IS NOT NULL FROM bff.outbox WHERE id = $1", row
            ):
                break
            await asyncio.sleep(0.1)
        assert not pending, "the dead consumer's entries were never claimed"
    assert await db.fetchval("SELECT count(*) FROM bff.notifications WHERE outbox_id = $1", row) == 1
    assert (await notification(db, row))["id"] == first["id"]
    assert len(await push_sent(sandbox, token)) == 1
    requests = (await sandbox.get("/_control/pushgw/requests", params={"token": token})).json()
    assert len(requests) == 1


async def test_fees_and_shipments_reach_the_resident_and_a_row_that_cannot_render_holds_up_nothing(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    await sub_consent(app_client, sandbox, who, {SHIPMENT_TMPL: "accept"})
    # A producer's bug: a row its template cannot render. It fails on every try, and must neither
    # pile up in the stream's pending list nor keep anyone else's message waiting.
    broken = await db.fetchval(
        """
        INSERT INTO bff.outbox (topic, person_id, dedup_key, payload)
        VALUES ('case.changed', $1, $2, '{"event": "step"}'::jsonb) RETURNING id
        """,
        who["person_id"],
        f"test-broken:{uuid.uuid4()}",
    )
    try:
        async with pipeline(app_client):
            fee, parcel = payment_changed("paid"), delivery_changed("out_for_delivery")
            paid = await notification(db, await emit(db, who["person_id"], fee))
            shipped = await notification(db, await emit(db, who["person_id"], parcel))
            # Tried again as the outbox says (republished every 2 s here), never left pending.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                tried = await db.fetchval("SELECT published_at FROM bff.outbox WHERE id = $1", broken)
                pending = (await redis.xpending(STREAM, GROUP))["pending"]
                if pending == 0 and tried > await db.fetchval("SELECT now() - interval '2 seconds'"):
                    break
                await asyncio.sleep(0.2)
            assert pending == 0, await redis.xpending(STREAM, GROUP)
            assert await db.fetchval("SELECT delivered_at FROM bff.outbox WHERE id = $1", broken) is None
    finally:
        await db.execute("DELETE FROM bff.outbox WHERE id = $1", broken)
    assert (paid["category"], paid["link"]) == ("payments", f"/payments/{fee.payment_id}")
    assert "15.50" in paid["body"] and "已支付" in paid["body"]
    channels = await attempts(db, paid["id"])
    assert "wechat" not in channels and channels["app"]["status"] == "sending"  # no WeChat template fits
    # The shipment went by WeChat (the first channel that takes it ends the search): one app push.
    assert [m["title"] for m in await push_sent(sandbox, token)] == [paid["title"]]
    assert (shipped["category"], shipped["link"]) == ("delivery", f"/deliveries/{parcel.delivery_id}")
    assert "派送中" in shipped["body"] and parcel.project_no in shipped["body"]
    sent = [m for m in await wechat_sent(sandbox, who["openid"]) if m["templateId"] == SHIPMENT_TMPL]
    assert [m["data"]["phrase3"]["value"] for m in sent] == ["派送中"]
    assert (await attempts(db, shipped["id"]))["wechat"]["status"] == "delivered"


async def test_redis_losing_the_stream_loses_nothing(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection, redis: Redis
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    root = app_client.app.state.root  # type: ignore[attr-defined]
    # Published, then the stream and its group vanish (a Redis restart without persistence).
    rows = [await event(db, who["person_id"], "step", "in_progress") for _ in range(3)]
    while await root.relay.publish_new():
        pass
    await redis.delete(STREAM)
    async with pipeline(app_client):
        made = [await notification(db, r, seconds=15) for r in rows]
    assert all(n["status"] == "sending" for n in made)
    assert len(await push_sent(sandbox, token)) == 3


async def test_a_wechat_send_that_may_have_gone_out_is_never_sent_again(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    await sub_consent(app_client, sandbox, who, {PROGRESS_TMPL: "accept"})
    root = app_client.app.state.root  # type: ignore[attr-defined]
    row = await event(db, who["person_id"], "step", "in_progress")
    nid, made = (await root.notifier.accept_many([row]))[row]
    assert made
    # A worker recorded the attempt and died before WeChat's answer was recorded.
    await db.execute(
        "INSERT INTO bff.notification_attempts (notification_id, channel, send_key, status, tries) VALUES ($1, 'wechat', $2, 'sending', 1)",
        nid,
        f"{nid}:wechat",
    )
    assert await root.notifier.advance(nid) is None  # its lease still holds
    await db.execute("UPDATE bff.notifications SET next_at = now() WHERE id = $1", nid)  # lapsed
    assert await root.notifier.advance(nid) == "technical-failure"
    assert await wechat_requests(sandbox, who["openid"]) == []
    assert (await attempts(db, nid))["wechat"]["reason"] == "unknown_outcome"


def test_xautoclaim_replies_of_both_redis_versions_are_indexed() -> None:
    entry = (b"1-0", {b"id": b"7"})
    assert claimed_entries([b"0-0", [entry]]) == [entry]  # Redis 6.2
    assert claimed_entries([b"0-0", [entry], []]) == [entry]  # Redis 7
    assert claimed_entries([b"0-0", [(b"2-0", None)], [b"2-0"]]) == []  # a trimmed entry


async def test_messages_are_private_and_paged(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    other = await login_resident(app_client, sandbox)
    async with pipeline(app_client):
        made = [
            await notification(db, await event(db, who["person_id"], "step", "in_progress"), final=False)
            for _ in range(3)
        ]
    first = (await app_client.get("/api/v1/messages", params={"limit": 2}, headers=auth(who))).json()
    assert len(first["items"]) == 2 and first["nextCursor"] and first["unreadCount"] == 3
    rest = (
        await app_client.get(
            "/api/v1/messages", params={"limit": 2, "cursor": first["nextCursor"]}, headers=auth(who)
        )
    ).json()
    assert len(rest["items"]) == 1 and rest["nextCursor"] is None
    assert {m["id"] for m in first["items"] + rest["items"]} == {str(n["id"]) for n in made}
    stranger = await app_client.get(f"/api/v1/messages/{made[0]['id']}", headers=auth(other))
    assert stranger.status_code == 404 and stranger.json()["code"] == "message_not_found"


# --- event sources: bookings -------------------------------------------------------------------


async def test_bookings_and_cancellations_are_announced_and_the_day_before_reminder_is_sent_once(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    who = await login_resident(app_client, sandbox)
    token = await install_app(app_client, sandbox, who)
    item = await bookable_item(db)
    booked = await book(app_client, who, await first_slot(app_client, who, item))
    appointment_id = booked["id"]
    cancel = await app_client.post(f"/api/v1/appointments/{appointment_id}/cancel", headers=auth(who, key()))
    assert cancel.status_code == 200, cancel.text
    rows = await db.fetch(
        "SELECT id, topic, payload->>'event' AS event FROM bff.outbox WHERE payload->>'appointmentId' = $1 ORDER BY id",
        appointment_id,
    )
    assert [(r["topic"], r["event"]) for r in rows] == [
        ("appointment.changed", "booked"),
        ("appointment.changed", "cancelled"),
    ]
    # The day-before reminder: a booking starting tomorrow gets exactly one, however often the job runs.
    root = app_client.app.state.root  # type: ignore[attr-defined]
    again = await book(app_client, who, await first_slot(app_client, who, item))
    await db.execute(
        """
        UPDATE bff.appointments SET starts_at = date_trunc('day', now() AT TIME ZONE 'Asia/Shanghai')
               AT TIME ZONE 'Asia/Shanghai' + interval '1 day 10 hours' WHERE id = $1
        """,
        uuid.UUID(again["id"]),
    )
    assert await root.appointments.remind_tomorrow() >= 1
    await root.appointments.remind_tomorrow()
    reminders = await db.fetch(
        "SELECT id FROM bff.outbox WHERE topic = 'appointment.reminder' AND payload->>'appointmentId' = $1",
        again["id"],
    )
    assert len(reminders) == 1
    async with pipeline(app_client):
        made = [await notification(db, r["id"]) for r in [*rows, *reminders]]
    assert [n["template"] for n in made] == [
        "appointment.booked",
        "appointment.cancelled",
        "appointment.reminder",
    ]
    assert all(n["link"].startswith("/appointments/") for n in made)
    # No consent, one app: an app push each (the second booking's own confirmation too).
    assert len(await push_sent(sandbox, token)) == 4


async def test_the_worker_runs_the_pipeline_and_serves_its_push_metrics(
    services: Any,
    sandbox_url: str,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    app_client: httpx.AsyncClient,
) -> None:
    from bff.worker import run_worker

    who = await login_resident(app_client, sandbox)
    await install_app(app_client, sandbox, who)
    port = free_port()
    settings = make_settings(services, sandbox_url, **overrides(sandbox_url), worker_metrics_port=port)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    try:
        n = await notification(db, await event(db, who["person_id"]), seconds=20)
        assert n["status"] == "sending"
        async with httpx.AsyncClient() as http:
            text = ""
            for _ in range(50):
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                if "sx_push_stream_length " in text:
                    break
                await asyncio.sleep(0.2)
        assert 'sx_push_outcomes_total{channel="app",status="sending"}' in text
        assert 'sx_push_lag_seconds_count{channel="app"}' in text
        assert "sx_push_stream_length " in text and "sx_push_outbox_unpublished " in text
    finally:
        stop.set()
        await asyncio.wait_for(worker, 20)


async def test_sse_resumes_after_last_event_id_and_sends_heartbeats(
    app_client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    services: Any,
    sandbox_url: str,
) -> None:
    who = await login_resident(app_client, sandbox)
    async with pipeline(app_client):
        made = [
            await notification(db, await event(db, who["person_id"], "step", "in_progress"), final=False)
            for _ in range(3)
        ]
    async with served(overrides(sandbox_url, push_sse_heartbeat_s=0.2), services, sandbox_url) as other:
        lines: list[str] = []
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=5)) as http,
            http.stream(
                "GET",
                f"{other}/api/v1/messages/stream",
                headers={**auth(who), "Last-Event-ID": str(made[0]["seq"])},
            ) as response,
        ):
            assert response.headers["cache-control"] == "no-store"
            started = time.monotonic()
            async for line in response.aiter_lines():
                lines.append(line)
                if (
                    sum(1 for x in lines if x.startswith(": heartbeat")) >= 2
                    or time.monotonic() - started > 5
                ):
                    break
    ids = [x.removeprefix("id:").strip() for x in lines if x.startswith("id:")]
    assert ids == [str(made[1]["seq"]), str(made[2]["seq"])]  # only what came after the one it had
    assert sum(1 for x in lines if x.startswith(": heartbeat")) >= 2
    # A heartbeat is a comment only: a data line would reach the app as an empty message event.
    data = [x.removeprefix("data:").strip() for x in lines if x.startswith("data:")]
    assert len(data) == len(ids) and all(json.loads(d)["id"] for d in data), data


async def test_batches_accepting_the_same_rows_at_once_make_each_notification_once(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    # A republished row and a claimed one can sit in two consumers' batches at the same time.
    who = await login_resident(app_client, sandbox)
    root = app_client.app.state.root  # type: ignore[attr-defined]
    rows = [await event(db, who["person_id"], "step", "in_progress") for _ in range(24)]
    batches = [random.sample(rows, len(rows)) for _ in range(4)] + [rows[::2], rows[1::3]]
    answers = await asyncio.gather(*(root.notifier.accept_many(b) for b in batches))
    for row in rows:
        seen = [a[row] for a, b in zip(answers, batches, strict=True) if row in b]
        assert len({nid for nid, _ in seen}) == 1  # every batch holding it got the one notification
        assert sum(made is not None for _, made in seen) == 1  # and exactly one of them made it
    made = await db.fetch(
        """
        SELECT n.outbox_id, count(a.id) AS inbox FROM bff.notifications n
          LEFT JOIN bff.notification_attempts a ON a.notification_id = n.id AND a.channel = 'inbox'
         WHERE n.outbox_id = ANY($1::bigint[]) GROUP BY n.outbox_id
        """,
        rows,
    )
    assert sorted(r["outbox_id"] for r in made) == sorted(rows)
    assert {r["inbox"] for r in made} == {1}
    marked = await db.fetchval(
        "SELECT count(*) FROM bff.outbox WHERE id = ANY($1::bigint[]) AND delivered_at IS NOT NULL", rows
    )
    assert marked == len(rows)


async def test_devices_registered_at_the_same_instant_keep_their_own_platform(
    app_client: httpx.AsyncClient, sandbox: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    # A phone and a tablet registered in one instant: each token goes out with its own platform
    # (the gateway refuses a token of another platform's shape), newest first, ties by token.
    who = await login_resident(app_client, sandbox)
    installed = await sandbox.post(
        "/_control/pushgw/devices",
        json={"devices": [{"platform": p, "personRef": who["person_id"]} for p in ("ios", "android")]},
    )
    devices = [(d["token"], d["platform"]) for d in installed.json()["devices"]]
    for token, platform in devices:
        registered = await app_client.post(
            "/api/v1/push/devices",
            json={"token": token, "platform": platform, "appVersion": "3.2.0"},
            headers=auth(who, key()),
        )
        assert registered.status_code == 201, registered.text
    await db.execute(
        "UPDATE bff.push_devices SET registered_at = now() WHERE person_id = $1", who["person_id"]
    )
    first_token, first_platform = min(devices)
    row = await event(db, who["person_id"], "step", "in_progress")
    async with pipeline(app_client):
        made = await notification(db, row)
    assert made["status"] == "sending"
    app = (await attempts(db, made["id"]))["app"]
    assert (app["status"], app["target"]) == ("sending", first_token)
    [sent] = await push_sent(sandbox, first_token)
    assert sent["platform"] == first_platform
