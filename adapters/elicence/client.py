"""Typed client for the e-licence library (电子证照库).

Every call is signed: HMAC-SHA256 under our client secret over
`{timestamp}.{METHOD}.{path with query}.{body}`, where the path is the full path on the library's
host (the base URL's path included), so a signed call cannot be replayed against another path.
We are a *platform* client: each check names the department it is made for. Every POST carries
a request id the library de-duplicates by, so those calls are idempotent for the resilience layer.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import msgspec

from adapters.elicence.schemas import AuthCode, Licence, LicenceList, Refusal, UsagePage, Verification
from adapters.http import Reply, Upstream
from adapters.refusal import Refused, result

T = TypeVar("T")


class ElicenceRefused(Refused[Refusal]):
    """The library said no (licence expired or revoked, code used or expired, ...); `reason` is its
    `err_code`, and a refused check's `refusal.usage_id` names the use it recorded."""


def sign(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class ElicenceClient:
    def __init__(self, upstream: Upstream, client_id: str, secret: str) -> None:
        self.upstream = upstream
        self._client_id = client_id
        self._secret = secret
        self._prefix = urlsplit(upstream.base_url).path.rstrip("/")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, type_: type[T]) -> T:
        raw = msgspec.json.encode(body) if body is not None else b""
        timestamp = str(int(time.time()))
        reply = await self.upstream.call(
            method,
            path,
            json=body,
            headers={
                "X-Elicence-Client-Id": self._client_id,
                "X-Elicence-Timestamp": timestamp,
                "X-Elicence-Signature": sign(self._secret, timestamp, method, self._prefix + path, raw),
            },
            # GETs are safe; every POST carries a request id (or only reads: list and usage queries).
            idempotent=True,
        )
        return self._result(reply, type_)

    def _result(self, reply: Reply, type_: type[T]) -> T:
        return result(self.upstream, reply, type_, refusal=Refusal, refused=ElicenceRefused, label="elicence")

    async def licences(self, holder_code: str, holder_type: str = "111") -> LicenceList:
        """The holder's licences, invalid ones included. A POST: holder codes never go in URLs."""
        body = {"holder_code": holder_code, "holder_type": holder_type}
        return await self._call("POST", "/v1/licences/search", body, LicenceList)

    async def licence(self, licence_id: str) -> Licence:
        return await self._call("GET", f"/v1/licences/{quote(licence_id, safe='')}", None, Licence)

    async def grant(
        self, *, request_id: str, licence_id: str, holder_code: str, purpose: str, ttl_s: int
    ) -> AuthCode:
        """A single-use usage authorisation code (用证授权码) for any department, valid `ttl_s`."""
        body = {
            "request_id": request_id,
            "licence_id": licence_id,
            "holder_code": holder_code,
            "purpose": purpose,
            "ttl_s": ttl_s,
            "single_use": True,
        }
        return await self._call("POST", "/v1/auth-codes", body, AuthCode)

    async def verify(
        self,
        *,
        request_id: str,
        auth_code: str,
        purpose: str,
        channel: str,
        department_code: str,
        department_name: str,
    ) -> Verification:
        """The counter-side check of a code, for `department`; a refusal raises ElicenceRefused."""
        body = {
            "request_id": request_id,
            "auth_code": auth_code,
            "purpose": purpose,
            "channel": channel,
            "department_code": department_code,
            "department_name": department_name,
        }
        return await self._call("POST", "/v1/verifications", body, Verification)

    async def usages(
        self, holder_code: str, since: int, limit: int = 200, holder_type: str = "111"
    ) -> UsagePage:
        """The holder's uses after `since`, oldest first (seq order is the library's commit order)."""
        body = {"holder_code": holder_code, "holder_type": holder_type, "since": since, "limit": limit}
        return await self._call("POST", "/v1/usages/search", body, UsagePage)
