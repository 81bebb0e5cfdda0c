"""The WeChat access token, shared by every worker and replica through Redis.

`stable_token` is fetched by one refresher at a time (a Redis lock); the others wait for the
shared value instead of fetching their own: each plain fetch counts against a daily quota, and a
forced refresh would invalidate everyone else's token.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from adapters.errors import UpstreamUnavailable

_TOKEN_KEY = "sx:wechat:{appid}:access_token"  # noqa: S105 - a Redis key name
_LOCK_KEY = "sx:wechat:{appid}:access_token:lock"
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class AccessTokenCache:
    def __init__(
        self,
        redis: Redis,
        appid: str,
        fetch: Callable[[bool], Awaitable[tuple[str, int]]],
        *,
        wait_s: float = 2.0,
    ) -> None:
        self._redis = redis
        self._key = _TOKEN_KEY.format(appid=appid)
        self._lock = _LOCK_KEY.format(appid=appid)
        self._fetch = fetch
        self._wait_s = wait_s

    async def get(self, *, refresh_if: str | None = None) -> str:
        """The current token. `refresh_if`: a token WeChat just rejected; refresh only if it is still
        the shared one (another worker may already have replaced it)."""
        cached = await self._redis.get(self._key)
        if cached is not None and _text(cached) != refresh_if:
            return _text(cached)
        owner = uuid.uuid4().hex
        if await self._redis.set(self._lock, owner, nx=True, px=int(self._wait_s * 2000)):
            try:
                token, expires_in = await self._fetch(refresh_if is not None)
                # Refresh well before WeChat's expiry so no caller holds a token about to lapse.
                await self._redis.set(self._key, token, ex=max(60, expires_in - 300))
                return token
            finally:
                await self._redis.eval(_RELEASE, 1, self._lock, owner)  # type: ignore[misc]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_s
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            cached = await self._redis.get(self._key)
            if cached is not None and _text(cached) != refresh_if:
                return _text(cached)
        raise UpstreamUnavailable(
            "wechat access token is being refreshed", detail_zh="微信 access token 正在刷新"
        )
