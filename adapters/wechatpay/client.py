"""Typed client for WeChat Pay API v3 through the one `wechatpay` upstream (made in bff/wiring.py).

Every request is signed with the merchant key (`Authorization: WECHATPAY2-SHA256-RSA2048 ...`);
every answer is verified against the platform certificate its `Wechatpay-Serial` names before
anything in it is believed. Platform certificates come from `/v3/certificates` (decrypted with the
APIv3 key, kept in memory, fetched again when an unknown serial appears, at most every
`refetch_after_s`). Prepay, refund and close are safe to repeat with the same `out_trade_no` /
`out_refund_no` (the platform answers the first result again), so they go as idempotent calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TypeVar
from urllib.parse import quote

import msgspec
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.http import Reply, Upstream
from adapters.wechatpay import crypto
from adapters.wechatpay.schemas import (
    BillLink,
    Certificates,
    CombineTransaction,
    ErrorAnswer,
    Prepay,
    Refund,
    Transaction,
)

T = TypeVar("T")


class WeChatPayRefused(ProblemError):
    """The platform said no (4xx): `reason` is its code (`ORDERPAID`, `ORDER_NOT_EXIST`, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(
            f"{reason}: {message}",
            status=status,
            code="payment_upstream_refused",
            detail_zh=f"微信支付拒绝了请求（{reason}）：{message}",
        )
        self.reason = reason


class _SignerNotListed(BadUpstreamAnswer):
    pass


class PlatformCerts:
    """The platform's public keys by serial, from `/v3/certificates`.

    An unknown serial fetches the list again unless a fetch began after the caller started
    looking (that fetch already saw every certificate that could have signed what the caller
    holds). Fetches run one at a time, so a flood of made-up serials costs one call at a time."""

    def __init__(self, client: WeChatPayClient) -> None:
        self.client = client
        self.keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetch_began = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, serial: str) -> rsa.RSAPublicKey | None:
        """The key of `serial`; an unknown serial fetches the list again (coalesced)."""
        key = self.keys.get(serial)
        if key is not None:
            return key
        started = time.monotonic()
        async with self._lock:
            key = self.keys.get(serial)
            if key is None and self._fetch_began < started:
                self._fetch_began = time.monotonic()
                try:
                    await self._fetch()
                except _SignerNotListed:
                    # The platform rotated between listing and signing: the next listing has it.
                    await self._fetch()
                key = self.keys.get(serial)
        return key

    async def _fetch(self) -> None:
        reply = await self.client.send("GET", "/v3/certificates")
        if reply.status != 200:
            raise BadUpstreamAnswer(
                f"wechatpay certificates answered {reply.status}",
                detail_zh=f"微信支付证书接口返回 {reply.status}",
            )
        listing = self.client.upstream.decode(reply, Certificates)
        found: dict[str, rsa.RSAPublicKey] = {}
        for entry in listing.data:
            enc = entry.encrypt_certificate
            try:
                pem = crypto.decrypt(self.client.apiv3_key, enc.nonce, enc.ciphertext, enc.associated_data)
                found[entry.serial_no.upper()] = crypto.public_key_of(pem)
            except (crypto.DecryptFailed, ValueError):
                continue
        # The listing itself must be signed by one of the certificates it lists.
        serial = reply.headers.get("wechatpay-serial", "").upper()
        public = found.get(serial)
        if public is None:
            raise _SignerNotListed(
                "the certificate listing is signed by a certificate it does not list",
                detail_zh="证书列表的签名证书不在列表之中",
            )
        if not _answer_signed(public, reply):
            self.client.upstream.record_malformed()
            raise BadUpstreamAnswer(
                "the certificate listing is not signed by a listed certificate",
                detail_zh="证书列表的签名不是由所列证书签发",
            )
        self.keys.update(found)


def _answer_signed(public: rsa.RSAPublicKey, reply: Reply) -> bool:
    h = reply.headers
    timestamp, nonce_, signature = (
        h.get("wechatpay-timestamp", ""),
        h.get("wechatpay-nonce", ""),
        h.get("wechatpay-signature", ""),
    )
    if not (timestamp and nonce_ and signature):
        return False
    return crypto.verify(public, crypto.answer_message(timestamp, nonce_, reply.body), signature)


class WeChatPayClient:
    def __init__(
        self,
        upstream: Upstream,
        *,
        mchid: str,
        appid: str,
        merchant_key: rsa.RSAPrivateKey,
        merchant_serial: str,
        apiv3_key: str,
    ) -> None:
        self.upstream = upstream
        self.mchid = mchid
        self.appid = appid
        self.key = merchant_key
        self.serial = merchant_serial
        self.apiv3_key = apiv3_key
        self.certs = PlatformCerts(self)

    # --- the wire ---

    async def send(
        self, method: str, target: str, body: object = None, *, idempotent: bool | None = None
    ) -> Reply:
        raw = b"" if body is None else msgspec.json.encode(body)
        header = crypto.authorization(
            self.key, self.mchid, self.serial, method, target, raw, int(time.time())
        )
        headers = {"Authorization": header}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return await self.upstream.call(
            method,
            target,
            json=body,
            headers=headers,
            idempotent=idempotent,
        )

    async def _verified(self, reply: Reply) -> Reply:
        public = await self.certs.get(reply.headers.get("wechatpay-serial", "").upper())
        if public is None or not _answer_signed(public, reply):
            self.upstream.record_malformed()
            raise BadUpstreamAnswer(
                "wechatpay answer not signed by a platform certificate",
                detail_zh="微信支付应答未经平台证书签名",
            )
        return reply

    async def _call(
        self, method: str, target: str, body: object, type_: type[T] | None, *, idempotent: bool | None = None
    ) -> T | None:
        reply = await self._verified(await self.send(method, target, body, idempotent=idempotent))
        if reply.status in (200, 204):
            return None if type_ is None or reply.status == 204 else self.upstream.decode(reply, type_)
        if 400 <= reply.status < 500:
            try:
                err = msgspec.json.decode(reply.body, type=ErrorAnswer)
            except msgspec.DecodeError:
                err = ErrorAnswer(code=f"http_{reply.status}")
            raise WeChatPayRefused(reply.status, err.code, err.message)
        self.upstream.record_malformed()
        raise BadUpstreamAnswer(
            f"wechatpay answered {reply.status}", detail_zh=f"微信支付返回 {reply.status}"
        )

    # --- typed calls ---

    async def prepay(
        self,
        trade_type: str,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        notify_url: str,
        time_expire: str,
        openid: str | None = None,
        attach: str | None = None,
    ) -> Prepay:
        """JSAPI / APP / NATIVE prepay; the same out_trade_no with the same fields answers the same."""
        body: dict[str, object] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": time_expire,
            "notify_url": notify_url,
            "amount": {"total": amount_fen, "currency": "CNY"},
        }
        if attach:
            body["attach"] = attach
        if trade_type == "JSAPI":
            body["payer"] = {"openid": openid}
        path = {"JSAPI": "jsapi", "APP": "app", "NATIVE": "native"}[trade_type]
        result = await self._call("POST", f"/v3/pay/transactions/{path}", body, Prepay, idempotent=True)
        assert result is not None
        return result

    async def query(self, out_trade_no: str) -> Transaction:
        target = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?mchid={self.mchid}"
        result = await self._call("GET", target, None, Transaction)
        assert result is not None
        return result

    async def close(self, out_trade_no: str) -> None:
        target = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        await self._call("POST", target, {"mchid": self.mchid}, None, idempotent=True)

    async def prepay_combine(
        self,
        trade_type: str,
        *,
        combine_out_trade_no: str,
        sub_orders: list[tuple[str, str, int, str]],
        notify_url: str,
        time_expire: str,
        openid: str | None = None,
    ) -> Prepay:
        """合单支付 over 2-10 of our orders: (out_trade_no, description, amount_fen, attach) each; the
        payer confirms once. Repeating the same fields answers the same prepay."""
        body: dict[str, object] = {
            "combine_appid": self.appid,
            "combine_mchid": self.mchid,
            "combine_out_trade_no": combine_out_trade_no,
            "time_expire": time_expire,
            "notify_url": notify_url,
            "sub_orders": [
                {
                    "mchid": self.mchid,
                    "out_trade_no": out_trade_no,
                    "description": description,
                    "attach": attach,
                    "amount": {"total_amount": amount_fen, "currency": "CNY"},
                }
                for out_trade_no, description, amount_fen, attach in sub_orders
            ],
        }
        if trade_type == "JSAPI":
            body["combine_payer_info"] = {"openid": openid}
        path = {"JSAPI": "jsapi", "APP": "app", "NATIVE": "native"}[trade_type]
        result = await self._call("POST", f"/v3/combine-transactions/{path}", body, Prepay, idempotent=True)
        assert result is not None
        return result

    async def query_combine(self, combine_out_trade_no: str) -> CombineTransaction:
        target = f"/v3/combine-transactions/out-trade-no/{quote(combine_out_trade_no, safe='')}"
        result = await self._call("GET", target, None, CombineTransaction)
        assert result is not None
        return result

    async def close_combine(self, combine_out_trade_no: str, out_trade_nos: list[str]) -> None:
        target = f"/v3/combine-transactions/out-trade-no/{quote(combine_out_trade_no, safe='')}/close"
        body = {
            "combine_appid": self.appid,
            "sub_orders": [{"mchid": self.mchid, "out_trade_no": n} for n in out_trade_nos],
        }
        await self._call("POST", target, body, None, idempotent=True)

    async def refund(
        self,
        *,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        reason: str,
        notify_url: str,
    ) -> Refund:
        """A retry with the same out_refund_no is the same refund (never a second one)."""
        body = {
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "reason": reason,
            "notify_url": notify_url,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"},
        }
        result = await self._call("POST", "/v3/refund/domestic/refunds", body, Refund, idempotent=True)
        assert result is not None
        return result

    async def query_refund(self, out_refund_no: str) -> Refund:
        result = await self._call(
            "GET", f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}", None, Refund
        )
        assert result is not None
        return result

    async def trade_bill(self, bill_date: str) -> bytes | None:
        """The day's trade bill (bill_type ALL), checked against the signed SHA1; None when no bill."""
        try:
            link = await self._call(
                "GET", f"/v3/bill/tradebill?bill_date={bill_date}&bill_type=ALL", None, BillLink
            )
        except WeChatPayRefused as exc:
            if exc.reason == "NO_STATEMENT_EXIST":
                return None
            raise
        assert link is not None
        url = link.download_url
        base = self.upstream.base_url
        if not url.startswith(base + "/"):
            raise BadUpstreamAnswer(
                "the bill link points outside the platform", detail_zh="账单链接指向平台之外"
            )
        reply = await self.send("GET", url[len(base) :])
        if reply.status != 200:
            raise BadUpstreamAnswer(
                f"bill download answered {reply.status}", detail_zh=f"账单下载返回 {reply.status}"
            )
        digest = hashlib.sha1(reply.body, usedforsecurity=False).hexdigest()  # WeChat's choice
        if link.hash_value and digest != link.hash_value.lower():
            raise BadUpstreamAnswer(
                "the bill does not match its signed hash", detail_zh="账单与其签名摘要不符"
            )
        return reply.body

    # --- what the payer's client needs ---

    def jsapi_params(self, prepay_id: str, *, timestamp: int | None = None) -> dict[str, str]:
        """`wx.requestPayment`'s fields; paySign over `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce_str = crypto.nonce()
        package = f"prepay_id={prepay_id}"
        pay_sign = crypto.sign(self.key, f"{self.appid}\n{ts}\n{nonce_str}\n{package}\n")
        return {
            "appId": self.appid,
            "timeStamp": ts,
            "nonceStr": nonce_str,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    def app_params(self, prepay_id: str, *, timestamp: int | None = None) -> dict[str, str]:
        """The App SDK's PayReq; sign over `appid\\ntimestamp\\nnoncestr\\nprepayid\\n`."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce_str = crypto.nonce()
        return {
            "appid": self.appid,
            "partnerid": self.mchid,
            "prepayid": prepay_id,
            "package": "Sign=WXPay",
            "noncestr": nonce_str,
            "timestamp": ts,
            "sign": crypto.sign(self.key, f"{self.appid}\n{ts}\n{nonce_str}\n{prepay_id}\n"),
        }
