"""The 12345 adapter against the sandbox over HTTP: typed calls with the channel key, a retried
filing answered with the same ticket, 12345's refusals decoded, the webhooks the sandbox really
signs verified (and forged, stale, tampered or mislabelled ones refused), and the root wiring one
breaker for it."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest

from adapters.errors import NotSent
from adapters.hotline import callback
from adapters.hotline.client import HotlineClient, HotlineRefused
from adapters.hotline.schemas import Caller, Location, Related
from adapters.http import Policy, Upstream
from tests.callback_receiver import Receiver

SECRET = "sandbox-hotline-secret"
KEY = "sandbox-hotline-channel-key"


@pytest.fixture
async def upstream(sandbox_url: str) -> AsyncIterator[Upstream]:
    up = Upstream(
        "hotline", f"{sandbox_url}/hotline", Policy(call_timeout=5, minimum_calls=2, open_seconds=30)
    )
    await up.start()
    try:
        yield up
    finally:
        await up.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = await Receiver().start()
    try:
        yield rec
    finally:
        await rec.stop()


def filing(**extra: Any) -> dict[str, Any]:
    return {
        "request_id": "HT" + secrets.token_hex(8),
        "kind": "complaint",
        "content": "小区门口的社保卡服务网点连续三天不开门，电话也打不通。",
        "caller": Caller(name="张三", phone="13800138000", ref="P-" + secrets.token_hex(4)),
        "channel": "mini_program",
        "anonymous": False,
        "location": Location(region_code="430104", address="岳麓区麓谷大道 627 号"),
        "related": Related(),
        "attachments": [],
        "notify_url": None,
        **extra,
    }


async def wait_for(receiver: Receiver, count: int, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while len(receiver.seen) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def test_filing_is_typed_and_a_retry_answers_the_same_ticket(upstream: Upstream) -> None:
    client = HotlineClient(upstream, KEY)
    body = filing()
    made = await client.file(**body)
    assert made.ticket_no.startswith("RX") and made.status == "accepted" and made.kind == "complaint"
    assert [e.type for e in made.events] == ["accepted"] and made.events[0].ticket_seq == 1
    again = await client.file(**body)
    assert again.ticket_no == made.ticket_no and again.events[0].event_id == made.events[0].event_id
    seen = await client.ticket(made.ticket_no)
    assert seen.ticket_no == made.ticket_no and seen.deadline_at is None
    feed = await client.changes(made.events[0].seq - 1, limit=5)
    assert made.events[0].event_id in [e.event_id for e in feed.events]
    assert feed.next_since >= made.events[0].seq


async def test_refusals_are_decoded_with_12345s_code(upstream: Upstream) -> None:
    client = HotlineClient(upstream, KEY)
    with pytest.raises(HotlineRefused) as anonymous:
        await client.file(**filing(kind="consultation", anonymous=True))
    assert anonymous.value.status == 422 and anonymous.value.reason == "anonymity_not_allowed"
    with pytest.raises(HotlineRefused) as missing:
        await client.ticket("RX00000000000000")
    assert missing.value.status == 404 and missing.value.reason == "ticket_not_found"
    with pytest.raises(HotlineRefused) as nothing:
        await client.reply(
            request_id=secrets.token_hex(6),
            ticket_no=(await client.file(**filing())).ticket_no,
            info_request_id="IRX",
            text="麓谷大道社保卡服务网点",
            attachments=[],
        )
    assert nothing.value.status == 409 and nothing.value.reason == "no_open_info_request"
    with pytest.raises(HotlineRefused) as unauthorised:
        await HotlineClient(upstream, "wrong-key").kb_search("社保卡")
    assert unauthorised.value.status == 401 and unauthorised.value.reason == "unauthorised"


async def test_knowledge_base_search(upstream: Upstream) -> None:
    found = await HotlineClient(upstream, KEY).kb_search("我的社保卡丢了怎么办", limit=3)
    assert found.results and found.results[0].question == "社保卡丢了怎么补办？"
    assert found.results[0].answer and found.results[0].score


async def test_an_open_breaker_sends_nothing(sandbox: httpx.AsyncClient, sandbox_url: str) -> None:
    # A port nothing listens on: the breaker opens, then a call is refused without being sent.
    up = Upstream("hotline", "http://127.0.0.1:9/hotline", Policy(minimum_calls=2, max_retries=0))
    await up.start()
    try:
        client = HotlineClient(up, KEY)
        for _ in range(3):
            with pytest.raises(Exception):  # noqa: B017 - connection failures, then the breaker
                await client.kb_search("社保卡")
        with pytest.raises(NotSent):
            await client.file(**filing())
    finally:
        await up.close()


async def test_the_webhooks_12345_signs_verify_and_forgeries_do_not(
    upstream: Upstream, sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    client = HotlineClient(upstream, KEY)
    made = await client.file(**filing(notify_url=receiver.url))
    await wait_for(receiver, 1)
    assert len(receiver.seen) == 1
    got = receiver.seen[0]
    headers = {k.lower(): v for k, v in got.headers.items()}
    event = callback.verify(headers, got.body, secret=SECRET, window_s=300)
    assert (
        event.ticket_no == made.ticket_no
        and event.type == "accepted"
        and event.event_id == made.events[0].event_id
    )

    def rejected(h: dict[str, str], body: bytes, **kw: Any) -> bool:
        try:
            callback.verify(h, body, secret=kw.get("secret", SECRET), window_s=300, now=kw.get("now"))
        except callback.CallbackRejected:
            return True
        return False

    assert rejected(headers, got.body.replace(b"accepted", b"closed"))  # tampered
    assert rejected(headers, got.body, secret="another-secret")  # forged
    assert rejected(headers, got.body, now=int(headers[callback.TIMESTAMP]) + 301)  # stale (a replay)
    assert rejected({**headers, callback.EVENT_ID: "HE-OTHER"}, got.body)  # mislabelled
    assert rejected({k: v for k, v in headers.items() if k != callback.SIGNATURE}, got.body)
    # A correctly signed body that is not an event is a 400, after the signature held.
    stamp = str(int(time.time()))
    junk = msgspec.json.encode({"hello": "world"})
    with pytest.raises(Exception) as not_event:
        callback.verify(
            {callback.TIMESTAMP: stamp, callback.SIGNATURE: callback.signature(SECRET, stamp, junk)},
            junk,
            secret=SECRET,
            window_s=300,
        )
    assert getattr(not_event.value, "status", None) == 400


async def test_the_root_builds_one_hotline_upstream_shared_by_the_api_and_the_job(
    client: httpx.AsyncClient,
) -> None:
    root = client.app.state.root  # type: ignore[attr-defined]
    assert root.hotline.client.upstream is root.upstreams["hotline"]
    assert root.upstreams["hotline"].base_url.endswith("/hotline")
    assert any(job.name == "hotline_reconcile" for job in root.jobs)
