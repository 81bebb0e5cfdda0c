"""The guide read path: Redis-cached with an ETag, stale copy when the upstream fails.

A cached copy is fresh for `item_cache_ttl_s`; after that we ask the upstream again, and if the
upstream cannot answer within the item budget we serve the old copy, labelled stale, for up to
`item_stale_ttl_s`. Concurrent misses for the same key in one process share one upstream call.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters import context
from adapters.catalogue.client import CatalogueClient
from adapters.errors import BadUpstreamAnswer, ProblemError, UpstreamUnavailable
from bff.catalogue.schemas import Freshness
from bff.catalogue.shaping import shape_guide
from bff.platform.logs import get_logger

log = get_logger("bff.catalogue")


class CachedGuide(msgspec.Struct, array_like=True):
    etag: str
    fetched_at: float
    body: bytes


class GuideReply(msgspec.Struct, frozen=True):
    etag: str
    body: bytes  # the full JSON response: {"freshness": …, "item": …}


class ItemNotFound(ProblemError):
    status = 404
    code = "item_not_found"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _envelope(cached: CachedGuide, status: str) -> GuideReply:
    freshness = msgspec.json.encode(Freshness(status=status, as_of=_iso(cached.fetched_at)))  # type: ignore[arg-type]
    return GuideReply(cached.etag, b'{"freshness":' + freshness + b',"item":' + cached.body + b"}")


class GuideCache:
    def __init__(
        self,
        redis: Redis,
        client: CatalogueClient,
        *,
        fresh_seconds: int,
        stale_seconds: int,
        budget_seconds: float,
    ) -> None:
        self.redis = redis
        self.client = client
        self.fresh_seconds = fresh_seconds
        self.stale_seconds = stale_seconds
        self.budget_seconds = budget_seconds
        self._inflight: dict[str, asyncio.Future[CachedGuide]] = {}
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(CachedGuide)

    @staticmethod
    def key(code: str, region: str | None) -> str:
        return f"sx:guide:{code}:{region or '-'}"

    async def get(self, code: str, region: str | None) -> GuideReply:
        key = self.key(code, region)
        cached = await self._read(key)
        if cached is not None and time.time() - cached.fetched_at < self.fresh_seconds:
            return _envelope(cached, "ok")
        try:
            fresh = await self._fetch_shared(key, code, region)
        except (UpstreamUnavailable, BadUpstreamAnswer) as exc:
            if cached is None:
                raise
            log.warning("guide_served_stale", code=code, region=region, reason=exc.code)
            return _envelope(cached, "stale")
        return _envelope(fresh, "ok")

    async def _fetch_shared(self, key: str, code: str, region: str | None) -> CachedGuide:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CachedGuide] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._fetch(key, code, region)
        except BaseException as exc:
            future.set_exception(exc)
            # Mark it retrieved: waiters re-raise it; nobody waiting is not an error.
            future.exception()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    async def _fetch(self, key: str, code: str, region: str | None) -> CachedGuide:
        with context.budget(self.budget_seconds):
            entry = await self.client.get_item(code, region)
        if entry is None or entry.status == "cancelled":
            raise ItemNotFound(f"no service item {code}", detail_zh=f"未找到事项 {code}")
        body = msgspec.json.encode(shape_guide(entry))
        etag = 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cached = CachedGuide(etag=etag, fetched_at=time.time(), body=body)
        try:
            await self.redis.set(key, self._encoder.encode(cached), ex=self.stale_seconds)
        except RedisError:
            log.warning("guide_cache_write_failed", code=code)
        return cached

    async def _read(self, key: str) -> CachedGuide | None:
        try:
            raw = await self.redis.get(key)
        except RedisError:
            log.warning("guide_cache_read_failed", key=key)
            return None
        if raw is None:
            return None
        try:
            return self._decoder.decode(raw if isinstance(raw, bytes) else raw.encode())
        except msgspec.DecodeError:
            return None
