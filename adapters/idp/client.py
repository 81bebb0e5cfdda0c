"""The identity provider client. The id_token is verified locally against the provider's JWKS
(fetched once, refetched only when an unknown `kid` shows up, at most every 30 s)."""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import msgspec

from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.http import Upstream
from adapters.idp.schemas import LookupReply, OAuthError, Resident, TokenSet

_JWKS_COOLDOWN_S = 30.0


class IdpClient:
    def __init__(self, upstream: Upstream, *, client_id: str, client_secret: str, issuer: str) -> None:
        self.upstream = upstream
        self.client_id = client_id
        self.issuer = issuer.rstrip("/")
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._auth = {"Authorization": f"Basic {basic}"}
        self._jwks: jwt.PyJWKSet | None = None
        self._jwks_at = 0.0

    async def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenSet:
        reply = await self.upstream.call(
            "POST",
            "/token",
            form={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            },
            headers=self._auth,
            idempotent=False,  # codes are single-use
        )
        if reply.status == 400:
            error = self.upstream.decode(reply, OAuthError)
            raise ProblemError(
                "the authorisation code, verifier or redirect URI was not accepted",
                status=401,
                code="idp_code_invalid",
                extra={"idpError": error.error},
                detail_zh="授权码、校验码或回调地址未被接受",
            )
        if reply.status != 200:
            raise BadUpstreamAnswer(
                f"identity provider token endpoint answered {reply.status}",
                detail_zh=f"身份认证平台令牌接口返回 {reply.status}",
            )
        # The caller verifies the id_token (verify_id_token) and keeps its claims.
        return self.upstream.decode(reply, TokenSet)

    async def _keyset(self, refresh: bool) -> jwt.PyJWKSet:
        if self._jwks is None or (refresh and time.monotonic() - self._jwks_at > _JWKS_COOLDOWN_S):
            reply = await self.upstream.call("GET", "/jwks")
            if reply.status != 200:
                raise BadUpstreamAnswer(
                    "identity provider JWKS unavailable", detail_zh="身份认证平台公钥不可用"
                )
            try:
                self._jwks = jwt.PyJWKSet.from_json(reply.body.decode())
            except (jwt.PyJWTError, ValueError) as exc:
                raise BadUpstreamAnswer(
                    "identity provider JWKS malformed", detail_zh="身份认证平台公钥格式错误"
                ) from exc
            self._jwks_at = time.monotonic()
        return self._jwks

    async def verify_id_token(self, id_token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError as exc:
            raise BadUpstreamAnswer(
                "identity provider sent a malformed id_token",
                detail_zh="身份认证平台返回的 id_token 格式错误",
            ) from exc
        keys = await self._keyset(refresh=False)
        if kid not in {k.key_id for k in keys.keys}:
            keys = await self._keyset(refresh=True)
        try:
            key = keys[str(kid)]
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=["RS256", "ES256"],
                audience=self.client_id,
                issuer=self.issuer,
                leeway=30,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except (KeyError, jwt.PyJWTError) as exc:
            raise BadUpstreamAnswer(
                "identity provider id_token did not verify", detail_zh="身份认证平台的 id_token 验证未通过"
            ) from exc
        return claims

    async def userinfo(self, access_token: str) -> Resident:
        reply = await self.upstream.call(
            "GET", "/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
        if reply.status != 200:
            raise BadUpstreamAnswer(
                f"identity provider userinfo answered {reply.status}",
                detail_zh=f"身份认证平台用户信息接口返回 {reply.status}",
            )
        return self.upstream.decode(reply, Resident)

    async def lookup(
        self, *, phone: str | None = None, id_card_number: str | None = None, name: str | None = None
    ) -> Resident | None:
        """Back-channel look-up by phone, or by ID number and name (PII in the body, never the URL)."""
        body = {
            k: v
            for k, v in {"phone_number": phone, "id_card_number": id_card_number, "name": name}.items()
            if v
        }
        reply = await self.upstream.call(
            "POST", "/api/residents/lookup", json=body, headers=self._auth, idempotent=True
        )
        if reply.status != 200:
            raise BadUpstreamAnswer(
                f"identity provider look-up answered {reply.status}",
                detail_zh=f"身份认证平台查询接口返回 {reply.status}",
            )
        try:
            answer = msgspec.json.decode(reply.body, type=LookupReply)
        except msgspec.DecodeError as exc:
            self.upstream.record_malformed()
            raise BadUpstreamAnswer(
                "identity provider look-up malformed", detail_zh="身份认证平台查询结果格式错误"
            ) from exc
        return answer.resident if answer.found else None
