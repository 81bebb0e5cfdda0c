"""Access tokens: short-lived signed JWTs, verified locally against the key ring.

Verification never trusts the token's own header beyond picking a known `kid`: the algorithm is
the key's, never the header's; headers that point elsewhere for a key (`jku`, `jwk`, `x5u`, `x5c`)
are refused outright, as is `crit`.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Any

import jwt
import msgspec

from adapters.errors import ProblemError
from auth.keys import KeyRing
from auth.principal import Channel, Principal

_ALLOWED_HEADER = frozenset({"alg", "typ", "kid"})
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "sid", "chn", "lvl"]


class TokenError(ProblemError):
    status = 401
    code = "token_invalid"

    def __init__(self, detail: str, code: str = "token_invalid", *, zh: str) -> None:
        super().__init__(
            detail, code=code, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}, detail_zh=zh
        )


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    sub: str
    sid: str
    jti: str
    chn: Channel
    lvl: int
    exp: int
    iat: int
    roles: tuple[str, ...] = ()
    kio: str | None = None  # the kiosk a kiosk session is bound to

    def principal(self) -> Principal:
        return Principal(
            person_id=self.sub,
            channel=self.chn,
            level=self.lvl,
            session_id=self.sid,
            jti=self.jti,
            roles=self.roles,
        )


class Issued(msgspec.Struct, frozen=True):
    token: str
    jti: str
    expires_in: int


class TokenService:
    def __init__(
        self,
        ring: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        leeway_s: int,
        cache_size: int = 10_000,
    ) -> None:
        self.ring = ring
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s
        self.leeway_s = leeway_s
        # A client sends the same token for its whole (<= 10 min) life: verify the signature once per
        # process and remember the claims until expiry. The deny-list is still checked every time.
        self._verified: OrderedDict[str, Claims] = OrderedDict()
        self._cache_size = cache_size

    def issue(
        self,
        *,
        subject: str,
        session_id: str,
        channel: Channel,
        level: int,
        ttl_s: int | None = None,
        roles: tuple[str, ...] = (),
        kiosk_id: str | None = None,
        now: float | None = None,
    ) -> Issued:
        issued_at = int(now if now is not None else time.time())
        lifetime = min(ttl_s or self.ttl_s, self.ttl_s)
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + lifetime,
            "jti": jti,
            "sid": session_id,
            "chn": channel,
            "lvl": level,
        }
        if roles:
            claims["roles"] = list(roles)
        if kiosk_id:
            claims["kio"] = kiosk_id
        key = self.ring.active
        token = jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"})
        return Issued(token, jti, lifetime)

    def verify(self, token: str) -> Claims:
        """Signature, algorithm, issuer, audience and times; raises TokenError (401)."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.exp + self.leeway_s:
                return known
            del self._verified[token]
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the access token is malformed", zh="访问令牌格式错误") from None
        if not set(header) <= _ALLOWED_HEADER:
            raise TokenError("the access token's header is not accepted", zh="访问令牌的头部不被接受")
        key = self.ring.by_kid.get(str(header.get("kid")))
        if key is None:
            raise TokenError("the access token was signed with an unknown key", zh="访问令牌由未知密钥签名")
        if header.get("alg") != key.alg:
            raise TokenError(
                "the access token's algorithm does not match its key", zh="访问令牌的算法与密钥不符"
            )
        try:
            payload = jwt.decode(
                token,
                key.public,
                algorithms=[key.alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the access token has expired", "token_expired", zh="访问令牌已过期") from None
        except jwt.PyJWTError:
            raise TokenError("the access token is not valid", zh="访问令牌无效") from None
        try:
            claims = msgspec.convert(payload, Claims)
        except msgspec.ValidationError:
            raise TokenError("the access token's claims are not valid", zh="访问令牌的声明无效") from None
        # A token lives at most as long as we issue them for, whoever signed it (a leaked or misused
        # signing key must not yield month-long tokens), and was not issued in the future.
        if claims.exp - claims.iat > self.ttl_s or claims.iat > time.time() + self.leeway_s:
            raise TokenError("the access token's lifetime is not accepted", zh="访问令牌的有效期不被接受")
        return claims
