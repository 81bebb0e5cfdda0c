"""Everything the identity code needs at run time, made once in the app's lifespan.

`auth` may not import `bff`, so the app builds `AuthConfig` from its settings and hands it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from adapters.idp.client import IdpClient
from adapters.wechat.client import WeChatClient
from auth.acting import ActingResolver
from auth.crypto import PiiCrypto
from auth.denylist import DenyCache
from auth.sessions import Lifetimes
from auth.tokens import TokenService


@dataclass(frozen=True)
class AuthConfig:
    lifetimes: dict[str, Lifetimes]
    refresh_grace_s: int = 10
    kiosk_skew_s: int = 300
    kiosk_face_min_score: float = 0.85
    rate_window_s: int = 60
    rate_per_ip: int = 60
    rate_per_subject: int = 10
    lockout_failures: int = 5
    lockout_window_s: int = 900
    lockout_s: int = 900
    staff_roles: tuple[str, ...] = field(default=("staff",))


@dataclass
class AuthRuntime:
    pool: asyncpg.Pool
    redis: Redis
    tokens: TokenService
    crypto: PiiCrypto
    wechat: WeChatClient
    idp: IdpClient
    config: AuthConfig
    # None: every check is a Redis round trip (Redis Cluster: its asyncio client has no pub/sub).
    deny: DenyCache | None = None
    # Resolves X-Acting-For (bff.mandates.service.MandateService); None: acting is refused.
    acting: ActingResolver | None = None

    @property
    def deny_ttl_s(self) -> int:
        """How long a deny-list entry must live: until any access token it covers has expired."""
        return self.tokens.ttl_s + self.tokens.leeway_s
