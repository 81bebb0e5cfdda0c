"""Shared steps for the payment tests (no tests here).

The sandbox's WeChat Pay delivers notifications over real HTTP to the `notify_url` of each order;
the BFF under test runs in-process (httpx ASGITransport), so a small relay — a real HTTP server
on a free port — hands each delivery to the in-process app unchanged (exact bytes and headers) and
the app's answer back to the sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.callback_receiver import listen
from tests.conftest import AppFactory
from tests.test_journey_helpers import advance, apply, auth, bookable_item, deliver, key, upstream_urls

REPO = Path(__file__).resolve().parents[1]
MCHID = "1900000109"
APPID = "wx5a0d5a4d1e0c0001"
APIV3_KEY = "sandbox-apiv3-key-0123456789abcd"
MERCHANT_CERT = x509.load_pem_x509_certificate(
    (REPO / "sandbox/wechatpay/dev_merchant_cert.pem").read_bytes()
)
CHINA = timezone(timedelta(hours=8))
NOTIFY_PATH = "/api/v1/payments/wechat/notify"


@dataclass
class Relay:
    """A real HTTP endpoint for the sandbox's notifications, forwarding to the in-process BFF."""

    target: httpx.AsyncClient | None = None
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start(self) -> Relay:
        self._runner, port = await listen(self._handle)
        self.url = f"http://127.0.0.1:{port}{NOTIFY_PATH}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.target is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = await self.target.post(NOTIFY_PATH, content=body, headers=headers)
        self.statuses.append(answer.status_code)
        return web.Response(
            status=answer.status_code,
            body=answer.content,
            content_type=(answer.headers.get("content-type") or "text/plain").split(";")[0],
        )


async def payment_client(
    make_client: AppFactory, sandbox_url: str, relay: Relay, **extra: Any
) -> httpx.AsyncClient:
    # These tests make dozens of orders for one resident in a minute: not the write limit's test.
    extra.setdefault("write_rate_per_user", 100_000)
    client = await make_client(
        **upstream_urls(sandbox_url),
        wechatpay_url=f"{sandbox_url}/wechatpay",
        payment_notify_url=relay.url,
        **extra,
    )
    relay.target = client
    return client


async def case_with_fee(
    client: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    db: asyncpg.Connection,
    who: dict[str, Any],
    lines: list[dict[str, Any]] | None = None,
    payable_by: date | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A case of `who`, accepted, with a fee notice delivered to the BFF: (case detail, fee)."""
    case = await apply(client, who, await bookable_item(db))
    project_no = case["case"]["projectNo"]
    assert (await deliver(client, await advance(sandbox, project_no, "accept"))).status_code == 200
    issued = await sandbox.post(
        f"/cases/_control/applications/{project_no}/fee",
        json={
            "lines": lines or [{"name": "工本费", "amount_fen": 1000}, {"name": "登记费", "amount_fen": 550}],
            "payable_by": (payable_by or date.today() + timedelta(days=7)).isoformat(),
            "deliver": False,
        },
    )
    assert issued.status_code == 201, issued.text
    assert (await deliver(client, issued.json()["event"])).status_code == 200
    return case, issued.json()["fee"]


async def create_payment(
    client: httpx.AsyncClient, who: dict[str, Any], case_id: str, idem: str | None = None
) -> httpx.Response:
    return await client.post(f"/api/v1/cases/{case_id}/payments", headers=auth(who, idem or key()))


async def set_policy(sandbox: httpx.AsyncClient, **policy: Any) -> None:
    response = await sandbox.put("/_control/wechatpay/policy", json=policy)
    assert response.status_code == 200, response.text


async def pay(sandbox: httpx.AsyncClient, out_trade_no: str, openid: str | None = None) -> dict[str, Any]:
    response = await sandbox.post(
        f"/_control/wechatpay/orders/{out_trade_no}/pay", json={"openid": openid} if openid else {}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def order_row(db: asyncpg.Connection, payment_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM bff.payment_orders WHERE id = $1", uuid.UUID(payment_id))
    assert row is not None
    return row


async def wait_for(db: asyncpg.Connection, sql: str, *args: Any, seconds: float = 10.0) -> Any:
    """Poll `sql` until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await db.fetchval(sql, *args)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def platform_key(db: asyncpg.Connection) -> tuple[str, rsa.RSAPrivateKey]:
    """The sandbox platform's current signing key (its own table): to forge *correctly signed*
    notifications whose contents are wrong, as a compromised or buggy platform would send."""
    row = await db.fetchrow(
        "SELECT serial_no, key_pem FROM sandbox.wechatpay_platform_certs WHERE retire_at IS NULL "
        "ORDER BY created_at DESC LIMIT 1"
    )
    assert row is not None
    key_ = serialization.load_pem_private_key(row["key_pem"].encode(), None)
    assert isinstance(key_, rsa.RSAPrivateKey)
    return row["serial_no"], key_


def transaction(out_trade_no: str, total: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": out_trade_no,
        "transaction_id": "42000" + secrets.token_hex(10),
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": datetime.now(CHINA).isoformat(timespec="seconds"),
        "payer": {"openid": "o" + secrets.token_hex(8)},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
    }
    body.update(changes)
    return body


def notification(
    plaintext: dict[str, Any],
    serial: str,
    key_: rsa.RSAPrivateKey,
    *,
    nonce: str | None = None,
    timestamp: int | None = None,
    event_type: str = "TRANSACTION.SUCCESS",
    original_type: str = "transaction",
) -> tuple[bytes, dict[str, str]]:
    iv = secrets.token_hex(6)
    ct = AESGCM(APIV3_KEY.encode()).encrypt(
        iv.encode(), json.dumps(plaintext).encode(), original_type.encode()
    )
    body = json.dumps(
        {
            "id": str(uuid.uuid4()),
            "create_time": datetime.now(CHINA).isoformat(timespec="seconds"),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "支付成功",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": iv,
                "associated_data": original_type,
                "ciphertext": base64.b64encode(ct).decode(),
                "original_type": original_type,
            },
        }
    ).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce_ = nonce or secrets.token_hex(16)
    signature = key_.sign(f"{ts}\n{nonce_}\n".encode() + body + b"\n", padding.PKCS1v15(), hashes.SHA256())
    return body, {
        "Content-Type": "application/json",
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce_,
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }


def verify_pay_sign(params: dict[str, str]) -> bool:
    """The mini-program's paySign checks out with the merchant certificate's public key."""
    public = MERCHANT_CERT.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    try:
        public.verify(
            base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except Exception:
        return False
    return True


MONEY_KEYS = ("amount", "total", "refund", "payer_total", "payer_refund")


def money_fields(doc: Any, path: str = "$") -> list[tuple[str, Any]]:
    """Every (path, value) whose key names money (…Fen / …_fen, amount, total, refund)."""
    found: list[tuple[str, Any]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            here = f"{path}.{k}"
            if (k.lower().endswith("fen") or k in MONEY_KEYS) and not isinstance(v, (dict, list)):
                found.append((here, v))
            found += money_fields(v, here)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += money_fields(v, f"{path}[{i}]")
    return found


def now_utc() -> datetime:
    return datetime.now(UTC)
