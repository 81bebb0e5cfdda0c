"""Typed client for the 好差评 system."""

from __future__ import annotations

from urllib.parse import quote

from adapters.http import Reply, Upstream
from adapters.ratings.schemas import Rating, Refusal
from adapters.refusal import Refused, result


class RatingRefused(Refused[Refusal]):
    """The 好差评 system said no; `reason` is its code."""


class RatingClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def rate(
        self,
        *,
        request_id: str,
        service_instance_id: str,
        channel: str,
        level: int,
        indicators: dict[str, int],
        comment: str,
        rater_ref: str,
    ) -> Rating:
        reply = await self.upstream.call(
            "POST",
            "/ratings",
            json={
                "request_id": request_id,
                "service_instance_id": service_instance_id,
                "channel": channel,
                "level": level,
                "indicators": indicators,
                "comment": comment,
                "rater_ref": rater_ref,
            },
            idempotent=True,  # de-duplicated by request_id (same id -> the same rating)
        )
        return self._result(reply)

    async def get(self, rating_id: str) -> Rating:
        return self._result(await self.upstream.call("GET", f"/ratings/{quote(rating_id, safe='')}"))

    def _result(self, reply: Reply) -> Rating:
        return result(self.upstream, reply, Rating, refusal=Refusal, refused=RatingRefused, label="ratings")
