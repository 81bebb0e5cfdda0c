"""Typed client for the 好差评 system."""

from __future__ import annotations

from urllib.parse import quote

import msgspec

from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.http import Reply, Upstream
from adapters.ratings.schemas import Rating, Refusal


class RatingRefused(ProblemError):
    def __init__(self, status: int, refusal: Refusal) -> None:
        super().__init__(refusal.message or refusal.error, status=status, code=refusal.error)
        self.reason = refusal.error


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
        if reply.status in (200, 201):
            return self.upstream.decode(reply, Rating)
        if 400 <= reply.status < 500:
            try:
                refusal = msgspec.json.decode(reply.body, type=Refusal)
            except msgspec.DecodeError:
                refusal = Refusal(error=f"http_{reply.status}")
            raise RatingRefused(reply.status, refusal)
        self.upstream.record_malformed()
        raise BadUpstreamAnswer(f"ratings answered {reply.status}")
