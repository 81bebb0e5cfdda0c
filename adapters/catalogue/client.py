"""Typed client for the item library: msgspec structs out, resilience from adapters.http."""

from __future__ import annotations

from urllib.parse import quote

from adapters.catalogue.schemas import ChangePage, Hall, HallList, ItemEntry, Region, RegionList
from adapters.errors import BadUpstreamAnswer
from adapters.http import Upstream


class CatalogueClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def get_item(self, catalog_code: str, region: str | None = None) -> ItemEntry | None:
        """The entry for `catalog_code` in `region` (the province when None); None when unknown."""
        params = {"region": region} if region else None
        reply = await self.upstream.call("GET", f"/items/{quote(catalog_code, safe='')}", params=params)
        if reply.status == 404:
            return None
        self._expect_ok(reply.status)
        return self.upstream.decode(reply, ItemEntry)

    async def changes(self, since: int, limit: int = 1000, *, timeout: float | None = None) -> ChangePage:
        """Entries changed after cursor `since` (0: the whole library), cancellations included."""
        reply = await self.upstream.call(
            "GET", "/changes", params={"since": str(since), "limit": str(limit)}, timeout=timeout
        )
        self._expect_ok(reply.status)
        return self.upstream.decode(reply, ChangePage)

    async def regions(self) -> list[Region]:
        reply = await self.upstream.call("GET", "/regions")
        self._expect_ok(reply.status)
        return self.upstream.decode(reply, RegionList).regions

    async def halls(self) -> list[Hall]:
        reply = await self.upstream.call("GET", "/halls")
        self._expect_ok(reply.status)
        return self.upstream.decode(reply, HallList).halls

    def _expect_ok(self, status: int) -> None:
        if status != 200:
            self.upstream.record_malformed()
            raise BadUpstreamAnswer(f"catalogue answered {status}", detail_zh=f"事项库返回 {status}")
