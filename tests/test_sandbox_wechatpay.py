"""The WeChat Pay v3 sandbox, spoken to over real HTTP as a merchant would: signed requests (the dev
merchant key committed in tests/data), answers verified against the platform certificate the
sandbox serves (decrypted with the APIv3 key), notifications received by a real HTTP server here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from tests.conftest import Services, free_port, start_process, stop_process, wait_http, with_database

REPO = Path(__file__).resolve().parents[1]
MCHID = "1900000109"
APPID = "wx5a0d5a4d1e0c0001"
APIV3_KEY = "sandbox-apiv3-key-0123456789abcd"
DEV_KEY = serialization.load_pem_private_key((REPO / "tests/data/dev_merchant_key.pem").read_bytes(), None)
DEV_CERT = x509.load_pem_x509_certificate((REPO / "sandbox/wechatpay/dev_merchant_cert.pem").read_bytes())
DEV_SERIAL = format(DEV_CERT.serial_number, "X")
CHINA = timezone(timedelta(hours=8))
assert isinstance(DEV_KEY, rsa.RSAPrivateKey)


@dataclass
class Merchant:
    mchid: str
    key: rsa.RSAPrivateKey
    serial: str
    apiv3_key: str
    appid: str = APPID


DEV = Merchant(MCHID, DEV_KEY, DEV_SERIAL, APIV3_KEY)


def authorization(m: Merchant, method: str, target: str, body: bytes, *, ts: int | None = None) -> str:
    timestamp = str(ts if ts is not None else int(time.time()))
    nonce = secrets.token_hex(16)
    message = f"{method}\n{target}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(m.key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{m.mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{m.serial}"'
    )


async def call(
    client: httpx.AsyncClient, method: str, target: str, body: Any = None, *, m: Merchant = DEV, **kw: Any
) -> httpx.Response:
    raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Authorization": authorization(m, method, target, raw, **kw), "Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return await client.request(method, "/wechatpay" + target, content=raw, headers=headers)


def decrypt(key: str, resource: dict[str, str]) -> bytes:
    return AESGCM(key.encode()).decrypt(
        resource["nonce"].encode(),
        base64.b64decode(resource["ciphertext"]),
        resource["associated_data"].encode(),
    )


async def platform_certs(client: httpx.AsyncClient, m: Merchant = DEV) -> dict[str, x509.Certificate]:
    response = await call(client, "GET", "/v3/certificates", m=m)
    assert response.status_code == 200, response.text
    certs = {}
    for item in response.json()["data"]:
        assert item["encrypt_certificate"]["algorithm"] == "AEAD_AES_256_GCM"
        cert = x509.load_pem_x509_certificate(decrypt(m.apiv3_key, item["encrypt_certificate"]))
        assert format(cert.serial_number, "X") == item["serial_no"]
        certs[item["serial_no"]] = cert
    return certs


def verifies(certs: dict[str, x509.Certificate], headers: Any, body: bytes) -> bool:
    cert = certs.get(headers.get("Wechatpay-Serial", ""))
    if cert is None:
        return False
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    try:
        public.verify(
            base64.b64decode(headers["Wechatpay-Signature"]), message, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    url: str
    got: list[Received] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # notification id -> answers of 500 left

    async def wait(self, count: int, seconds: float = 5) -> list[Received]:
        deadline = time.monotonic() + seconds
        while len(self.got) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.got


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}/notify")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        rec.got.append(Received(dict(request.headers), body, time.monotonic()))
        nid = json.loads(body).get("id", "")
        if rec.failures.get(nid, 0) > 0:
            rec.failures[nid] -= 1
            return web.json_response({"code": "FAIL", "message": "busy"}, status=500)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/notify", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture(autouse=True)
async def normal_delivery(sandbox: httpx.AsyncClient) -> AsyncIterator[None]:
    await sandbox.put("/_control/wechatpay/policy", json={})
    await sandbox.put("/_control/wechatpay/time-factor", json={"factor": 0.001})
    yield
    await sandbox.put("/_control/wechatpay/policy", json={})


def order_body(out_trade_no: str, notify_url: str, total: int = 1000, m: Merchant = DEV) -> dict[str, Any]:
    return {
        "appid": m.appid,
        "mchid": m.mchid,
        "description": "三湘政务-不动产登记费",
        "out_trade_no": out_trade_no,
        "time_expire": (datetime.now(CHINA) + timedelta(minutes=30)).isoformat(timespec="seconds"),
        "notify_url": notify_url,
        "amount": {"total": total, "currency": "CNY"},
        "payer": {"openid": "oSandboxPayer0001"},
    }


def new_no() -> str:
    return "SX" + secrets.token_hex(12).upper()


async def paid_order(
    sandbox: httpx.AsyncClient, receiver: Receiver, total: int = 1000, m: Merchant = DEV
) -> str:
    no = new_no()
    response = await call(
        sandbox, "POST", "/v3/pay/transactions/jsapi", order_body(no, receiver.url, total, m), m=m
    )
    assert response.status_code == 200, response.text
    paid = await sandbox.post(f"/_control/wechatpay/orders/{no}/pay", json={"mchid": m.mchid})
    assert paid.status_code == 200, paid.text
    return no


async def notifications(sandbox: httpx.AsyncClient, no: str) -> list[dict[str, Any]]:
    response = await sandbox.get("/_control/wechatpay/notifications", params={"out_trade_no": no})
    return response.json()["notifications"]  # type: ignore[no-any-return]


async def test_signature_required_and_answers_verify(sandbox: httpx.AsyncClient, receiver: Receiver) -> None:
    no = new_no()
    body = order_body(no, receiver.url)
    unsigned = await sandbox.post("/wechatpay/v3/pay/transactions/jsapi", json=body)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = await call(
        sandbox, "POST", "/v3/pay/transactions/jsapi", body, m=Merchant(MCHID, other_key, DEV_SERIAL, "")
    )
    assert forged.status_code == 401 and forged.json()["code"] == "SIGN_ERROR"
    stale = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", body, ts=int(time.time()) - 3600)
    assert stale.status_code == 401
    # A body changed after signing is caught.
    raw = json.dumps(body).encode()
    header = authorization(DEV, "POST", "/v3/pay/transactions/jsapi", raw)
    swapped = await sandbox.post(
        "/wechatpay/v3/pay/transactions/jsapi",
        content=raw.replace(b'"total": 1000', b'"total": 1'),
        headers={"Authorization": header, "Content-Type": "application/json"},
    )
    assert swapped.status_code == 401

    created = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", body)
    assert created.status_code == 200, created.text
    prepay_id = created.json()["prepay_id"]
    assert prepay_id.startswith("wx")
    certs = await platform_certs(sandbox)
    assert verifies(certs, created.headers, created.content)
    assert verifies(certs, forged.headers, forged.content)  # errors are signed too
    tampered_headers = created.headers.copy()
    tampered_headers["Wechatpay-Signature"] = tampered_headers["Wechatpay-Signature"][::-1]
    assert not verifies(certs, tampered_headers, created.content)

    again = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", body)
    assert again.status_code == 200 and again.json()["prepay_id"] == prepay_id
    changed = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", {**body, "amount": {"total": 999}})
    assert changed.status_code == 400 and changed.json()["code"] == "INVALID_REQUEST"
    other_mch = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", {**body, "mchid": "1900000999"})
    assert other_mch.status_code == 403 and other_mch.json()["code"] == "NO_AUTH"
    no_payer = {k: v for k, v in order_body(new_no(), receiver.url).items() if k != "payer"}
    missing = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", no_payer)
    assert missing.status_code == 400 and missing.json()["code"] == "PARAM_ERROR"
    app = await call(sandbox, "POST", "/v3/pay/transactions/app", no_payer)
    assert app.status_code == 200 and app.json()["prepay_id"].startswith("wx")
    native = await call(
        sandbox, "POST", "/v3/pay/transactions/native", {**no_payer, "out_trade_no": new_no()}
    )
    assert native.status_code == 200 and native.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")

    query = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}")
    assert query.status_code == 200 and query.json()["trade_state"] == "NOTPAY"
    assert verifies(certs, query.headers, query.content)
    unknown = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{new_no()}?mchid={MCHID}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "ORDER_NOT_EXIST"

    await sandbox.put("/_control/wechatpay/errors", json={"code": "FREQUENCY_LIMITED", "count": 1})
    limited = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}")
    assert limited.status_code == 429 and limited.json()["code"] == "FREQUENCY_LIMITED"
    after = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}")
    assert after.status_code == 200


async def test_pay_query_notify_and_close(sandbox: httpx.AsyncClient, receiver: Receiver) -> None:
    no = await paid_order(sandbox, receiver, total=2350)
    query = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}")
    order = query.json()
    assert order["trade_state"] == "SUCCESS" and order["transaction_id"].startswith("4200")
    assert order["amount"] == {"total": 2350, "payer_total": 2350, "currency": "CNY", "payer_currency": "CNY"}
    assert order["success_time"].endswith("+08:00") and order["payer"]["openid"] == "oSandboxPayer0001"

    [got] = await receiver.wait(1)
    assert verifies(await platform_certs(sandbox), got.headers, got.body)
    doc = got.doc
    assert doc["event_type"] == "TRANSACTION.SUCCESS" and doc["resource_type"] == "encrypt-resource"
    assert doc["resource"]["original_type"] == "transaction"
    plain = json.loads(decrypt(APIV3_KEY, doc["resource"]))
    assert plain["out_trade_no"] == no and plain["transaction_id"] == order["transaction_id"]
    assert plain["amount"]["total"] == 2350 and isinstance(plain["amount"]["total"], int)
    assert plain["mchid"] == MCHID and plain["appid"] == APPID and plain["trade_state"] == "SUCCESS"

    again = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", order_body(no, receiver.url, 2350))
    assert again.status_code == 400 and again.json()["code"] == "ORDERPAID"
    close_paid = await call(
        sandbox, "POST", f"/v3/pay/transactions/out-trade-no/{no}/close", {"mchid": MCHID}
    )
    assert close_paid.status_code == 400 and close_paid.json()["code"] == "ORDERPAID"

    other = new_no()
    await call(sandbox, "POST", "/v3/pay/transactions/jsapi", order_body(other, receiver.url))
    closed = await call(sandbox, "POST", f"/v3/pay/transactions/out-trade-no/{other}/close", {"mchid": MCHID})
    assert closed.status_code == 204 and closed.content == b""
    assert verifies(await platform_certs(sandbox), closed.headers, b"")
    reopen = await call(sandbox, "POST", "/v3/pay/transactions/jsapi", order_body(other, receiver.url))
    assert reopen.status_code == 400 and reopen.json()["code"] == "ORDER_CLOSED"
    assert (await sandbox.post(f"/_control/wechatpay/orders/{other}/pay", json={})).status_code == 409

    expiring = new_no()
    await call(sandbox, "POST", "/v3/pay/transactions/jsapi", order_body(expiring, receiver.url))
    assert (await sandbox.post(f"/_control/wechatpay/orders/{expiring}/expire", json={})).status_code == 200
    assert (await sandbox.post(f"/_control/wechatpay/orders/{expiring}/pay", json={})).status_code == 409
    failing = new_no()
    await call(sandbox, "POST", "/v3/pay/transactions/jsapi", order_body(failing, receiver.url))
    assert (await sandbox.post(f"/_control/wechatpay/orders/{failing}/fail", json={})).status_code == 200
    failed = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{failing}?mchid={MCHID}")
    assert failed.json()["trade_state"] == "PAYERROR"
    assert len(receiver.got) == 1  # only a success is notified


async def test_retries_follow_the_compressed_schedule(sandbox: httpx.AsyncClient, receiver: Receiver) -> None:
    factor = 0.002
    await sandbox.put("/_control/wechatpay/time-factor", json={"factor": factor})
    await sandbox.put("/_control/wechatpay/policy", json={"hold": True})
    no = await paid_order(sandbox, receiver)
    [held] = await notifications(sandbox, no)
    assert held["state"] == "held"
    receiver.failures[held["id"]] = 5  # 500 five times, then 204
    await sandbox.put("/_control/wechatpay/policy", json={})
    await sandbox.post("/_control/wechatpay/notifications/release", json={"order": "forward"})
    got = await receiver.wait(6, seconds=10)
    assert len(got) == 6
    await asyncio.sleep(0.1)
    [note] = await notifications(sandbox, no)
    assert note["state"] == "delivered"
    assert [a["status"] for a in note["attempts"]] == [500, 500, 500, 500, 500, 204]
    schedule_ms = [15_000 * factor, 15_000 * factor, 30_000 * factor, 180_000 * factor, 600_000 * factor]
    gaps_ms = [(b.at - a.at) * 1000 for a, b in itertools.pairwise(got)]
    for gap, expected in zip(gaps_ms, schedule_ms, strict=True):
        assert expected * 0.9 <= gap <= expected + 400, (gaps_ms, schedule_ms)
    assert len({r.doc["id"] for r in got}) == 1  # the same notification each time
    assert len({r.headers["Wechatpay-Nonce"] for r in got}) == 6  # but freshly signed


async def test_duplicate_drop_reorder_tamper_replay(sandbox: httpx.AsyncClient, receiver: Receiver) -> None:
    certs = await platform_certs(sandbox)
    await sandbox.put("/_control/wechatpay/policy", json={"drop": True})
    dropped = await paid_order(sandbox, receiver)
    await asyncio.sleep(0.3)
    [note] = await notifications(sandbox, dropped)
    assert note["state"] == "dropped" and note["attempts"][0]["outcome"] == "dropped"
    assert receiver.got == []

    await sandbox.put("/_control/wechatpay/policy", json={"hold": True})
    first, second = await paid_order(sandbox, receiver), await paid_order(sandbox, receiver)
    await asyncio.sleep(0.2)
    assert receiver.got == []
    released = await sandbox.post("/_control/wechatpay/notifications/release", json={"order": "reverse"})
    assert released.status_code == 200
    got = await receiver.wait(2)
    order_seen = [json.loads(decrypt(APIV3_KEY, r.doc["resource"]))["out_trade_no"] for r in got]
    assert order_seen == [second, first]
    await sandbox.put("/_control/wechatpay/policy", json={})

    [note] = await notifications(sandbox, first)
    dup = await sandbox.post(f"/_control/wechatpay/notifications/{note['id']}/duplicate", json={"copies": 5})
    assert dup.json()["statuses"] == [204] * 5
    copies = [r for r in receiver.got if r.doc["id"] == note["id"]]
    assert len(copies) == 6 and len({r.body for r in copies}) == 1
    assert all(verifies(certs, r.headers, r.body) for r in copies)

    count = len(receiver.got)
    await sandbox.post(f"/_control/wechatpay/notifications/{note['id']}/tamper", json={"what": "ciphertext"})
    bad_ct = receiver.got[count]
    assert verifies(certs, bad_ct.headers, bad_ct.body)  # signed, but the ciphertext does not decrypt
    with pytest.raises(InvalidTag):
        decrypt(APIV3_KEY, bad_ct.doc["resource"])
    await sandbox.post(f"/_control/wechatpay/notifications/{note['id']}/tamper", json={"what": "signature"})
    bad_sig = receiver.got[count + 1]
    assert not verifies(certs, bad_sig.headers, bad_sig.body)
    await sandbox.post(f"/_control/wechatpay/notifications/{note['id']}/tamper", json={"what": "serial"})
    assert receiver.got[count + 2].headers["Wechatpay-Serial"] not in certs

    replayed = await sandbox.post(f"/_control/wechatpay/notifications/{note['id']}/replay")
    assert replayed.status_code == 200
    replay = receiver.got[count + 3]
    original = copies[0]
    for name in ("Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature"):
        assert replay.headers[name] == original.headers[name]
    assert replay.body == original.body
    stale = await sandbox.post(f"/_control/wechatpay/notifications/{note['id']}/resend")
    old = receiver.got[count + 4]
    assert verifies(certs, old.headers, old.body)
    assert int(old.headers["Wechatpay-Timestamp"]) < time.time() - 300 and stale.status_code == 200

    await sandbox.put("/_control/wechatpay/policy", json={"delay_ms": 400})
    start = time.monotonic()
    delayed = await paid_order(sandbox, receiver)
    [note] = await notifications(sandbox, delayed)
    while not any(r.doc["id"] == note["id"] for r in receiver.got):
        await asyncio.sleep(0.02)
        assert time.monotonic() - start < 5
    assert time.monotonic() - start >= 0.4


async def test_refunds_once_per_number_and_never_above_paid(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    no = await paid_order(sandbox, receiver, total=1000)

    def refund(out_refund_no: str, amount: int, total: int = 1000) -> dict[str, Any]:
        return {
            "out_trade_no": no,
            "out_refund_no": out_refund_no,
            "reason": "不予受理",
            "notify_url": receiver.url,
            "amount": {"refund": amount, "total": total, "currency": "CNY"},
        }

    r1 = "RF" + secrets.token_hex(8)
    first = await call(sandbox, "POST", "/v3/refund/domestic/refunds", refund(r1, 400))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "PROCESSING" and first.json()["amount"]["refund"] == 400
    retried = await asyncio.gather(
        *(call(sandbox, "POST", "/v3/refund/domestic/refunds", refund(r1, 400)) for _ in range(5))
    )
    assert {r.json()["refund_id"] for r in retried} == {first.json()["refund_id"]}
    changed = await call(sandbox, "POST", "/v3/refund/domestic/refunds", refund(r1, 500))
    assert changed.status_code == 400 and changed.json()["code"] == "INVALID_REQUEST"
    too_much = await call(
        sandbox, "POST", "/v3/refund/domestic/refunds", refund("RF" + secrets.token_hex(8), 601)
    )
    assert too_much.status_code == 400 and too_much.json()["code"] == "INVALID_REQUEST"
    wrong_total = await call(
        sandbox, "POST", "/v3/refund/domestic/refunds", refund("RF" + secrets.token_hex(8), 1, 999)
    )
    assert wrong_total.status_code == 400
    r2 = "RF" + secrets.token_hex(8)
    assert (await call(sandbox, "POST", "/v3/refund/domestic/refunds", refund(r2, 600))).status_code == 200
    none_left = await call(
        sandbox, "POST", "/v3/refund/domestic/refunds", refund("RF" + secrets.token_hex(8), 1)
    )
    assert none_left.status_code == 400
    unknown = await call(
        sandbox, "POST", "/v3/refund/domestic/refunds", {**refund("RFX1", 1), "out_trade_no": new_no()}
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "RESOURCE_NOT_EXISTS"

    done = await sandbox.post(f"/_control/wechatpay/refunds/{r1}/success", json={})
    assert done.status_code == 200
    got = await receiver.wait(2)
    note = got[1].doc
    assert note["event_type"] == "REFUND.SUCCESS" and note["resource"]["original_type"] == "refund"
    plain = json.loads(decrypt(APIV3_KEY, note["resource"]))
    assert plain["out_refund_no"] == r1 and plain["refund_status"] == "SUCCESS"
    assert plain["amount"] == {"total": 1000, "refund": 400, "payer_total": 1000, "payer_refund": 400}
    queried = await call(sandbox, "GET", f"/v3/refund/domestic/refunds/{r1}")
    assert queried.json()["status"] == "SUCCESS" and "success_time" in queried.json()
    order = await call(sandbox, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={MCHID}")
    assert order.json()["trade_state"] == "REFUND"
    refunds = [
        r
        for r in (await sandbox.get("/_control/wechatpay/state")).json()["refunds"]
        if r["out_trade_no"] == no
    ]
    assert sorted((r["refund"], r["status"]) for r in refunds) == [(400, "SUCCESS"), (600, "PROCESSING")]


def _fen(yuan: str) -> int:
    return int(Decimal(yuan.lstrip("`")) * 100)


async def test_trade_bill_matches_what_the_platform_holds(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    # A merchant of its own, registered through the control API, so the day's bill is this test's.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "1900000777")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    m = Merchant("1900000777", key, format(cert.serial_number, "X"), "other-apiv3-key-0123456789abcdef")
    added = await sandbox.post(
        "/_control/wechatpay/merchants",
        json={
            "mchid": m.mchid,
            "cert_pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "apiv3_key": m.apiv3_key,
            "appids": [APPID],
        },
    )
    assert added.status_code == 201, added.text
    today = datetime.now(CHINA).date().isoformat()
    empty = await call(sandbox, "GET", f"/v3/bill/tradebill?bill_date={today}", m=m)
    assert empty.status_code == 400 and empty.json()["code"] == "NO_STATEMENT_EXIST"

    totals = [1, 250, 99_999]
    nos = [await paid_order(sandbox, receiver, total, m) for total in totals]
    refund = await call(
        sandbox,
        "POST",
        "/v3/refund/domestic/refunds",
        {
            "out_trade_no": nos[1],
            "out_refund_no": "RB" + secrets.token_hex(6),
            "amount": {"refund": 50, "total": 250},
        },
        m=m,
    )
    await sandbox.post(
        f"/_control/wechatpay/refunds/{refund.json()['out_refund_no']}/success", json={"mchid": m.mchid}
    )

    bill = await call(sandbox, "GET", f"/v3/bill/tradebill?bill_date={today}", m=m)
    assert bill.status_code == 200, bill.text
    info = bill.json()
    assert info["hash_type"] == "SHA1"
    url = httpx.URL(info["download_url"])
    target = url.raw_path.decode().removeprefix("/wechatpay")
    file = await call(sandbox, "GET", target, m=m)
    assert file.status_code == 200

    assert hashlib.sha1(file.content).hexdigest() == info["hash_value"]
    lines = file.content.decode("utf-8").strip().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, (f.lstrip("`") for f in line.split(",")), strict=True)) for line in lines[1:-2]]
    summary = dict(zip(lines[-2].split(","), (f.lstrip("`") for f in lines[-1].split(",")), strict=True))
    state = (await sandbox.get("/_control/wechatpay/state", params={"mchid": m.mchid})).json()
    paid_fen = sum(_fen(r["应结订单金额"]) for r in rows if r["交易状态"] == "SUCCESS")
    refunded_fen = sum(_fen(r["退款金额"]) for r in rows if r["交易状态"] == "REFUND")
    assert paid_fen == state["sums"][m.mchid]["paid_fen"] == sum(totals)
    assert refunded_fen == state["sums"][m.mchid]["refunded_fen"] == 50
    assert _fen(summary["应结订单总金额"]) == paid_fen and _fen(summary["退款总金额"]) == refunded_fen
    assert int(summary["总交易单数"]) == 4
    assert {r["商户订单号"] for r in rows} == set(nos)
    assert all(r["交易时间"].startswith(today) for r in rows)


async def test_certificate_rotation_keeps_the_old_one_listed(sandbox: httpx.AsyncClient) -> None:
    before = await platform_certs(sandbox)
    rotated = await sandbox.post("/_control/wechatpay/certificates/rotate", json={"old_valid_seconds": 600})
    new_serial = rotated.json()["serial_no"]
    assert new_serial not in before
    after = await platform_certs(sandbox)
    assert set(before) < set(after) and new_serial in after
    answer = await call(sandbox, "GET", "/v3/certificates")
    assert answer.headers["Wechatpay-Serial"] == new_serial
    assert verifies(after, answer.headers, answer.content)
    assert not verifies(before, answer.headers, answer.content)  # an old cache must refresh


async def test_delivery_goes_on_after_a_sandbox_restart(services: Services, receiver: Receiver) -> None:
    """kill -9 the platform between retries: the next process picks the notification up where the
    first left it (the same id, the attempt count going on), on its persisted schedule."""
    name = f"sx_wxpay_restart_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(services.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = with_database(services.admin_url, name)  # a socket URL keeps its ?host=
    env = dict(os.environ, DATABASE_URL=database_url)

    def start() -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = start_process([sys.executable, "-m", "sandbox", "--port", str(port)], env, "sandbox-restart")
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_control/health", proc)
        return proc, url

    first, url = await asyncio.to_thread(start)
    second = None
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await client.put("/_control/wechatpay/time-factor", json={"factor": 0.01})
            await client.put("/_control/wechatpay/policy", json={"hold": True})
            no = await paid_order(client, receiver)
            [note] = await notifications(client, no)
            receiver.failures[note["id"]] = 10_000
            await client.put("/_control/wechatpay/policy", json={})
            await client.post("/_control/wechatpay/notifications/release", json={"order": "forward"})
            await receiver.wait(3)  # 0, +150 ms, +150 ms; the next is due 300 ms later
        first.kill()
        first.wait(5)
        before = len(receiver.got)
        assert before >= 3
        receiver.failures[note["id"]] = 0
        second, url = await asyncio.to_thread(start)
        await receiver.wait(before + 1, seconds=10)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 5
            while (state := (await notifications(client, no))[0])["state"] != "delivered":
                assert time.monotonic() < deadline, state
                await asyncio.sleep(0.05)
        assert {r.doc["id"] for r in receiver.got} == {note["id"]}
        numbers = [a["attempt"] for a in state["attempts"] if a["kind"] in {"release", "scheduled"}]
        # Counting goes on across the restart (a send the crash left unrecorded is sent again).
        assert numbers[0] == 1 and numbers == sorted(set(numbers)) and numbers[-1] > before - 1
        assert len(receiver.got) >= len(numbers)
        assert state["attempts"][-1]["status"] == 204
    finally:
        for proc in (first, second):
            if proc is not None:
                stop_process(proc)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
