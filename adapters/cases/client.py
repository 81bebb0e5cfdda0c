"""Typed client for the case system; mutating calls carry our stable request id (de-duplicated)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import msgspec

from adapters.cases.schemas import Application, Changes, MaterialRef, Refusal, SupplementReply
from adapters.errors import BadUpstreamAnswer, ProblemError
from adapters.http import Reply, Upstream

T = TypeVar("T")


class CaseRefused(ProblemError):
    def __init__(self, status: int, refusal: Refusal) -> None:
        super().__init__(refusal.message or refusal.error, status=status, code=refusal.error)
        self.reason = refusal.error


class CaseClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def _result(self, reply: Reply, type_: type[T]) -> T:
        if reply.status in (200, 201):
            return self.upstream.decode(reply, type_)
        if 400 <= reply.status < 500:
            try:
                refusal = msgspec.json.decode(reply.body, type=Refusal)
            except msgspec.DecodeError:
                refusal = Refusal(error=f"http_{reply.status}")
            raise CaseRefused(reply.status, refusal)
        self.upstream.record_malformed()
        raise BadUpstreamAnswer(f"cases answered {reply.status}")

    async def apply(
        self,
        *,
        request_id: str,
        catalog_code: str,
        task_code: str,
        region_code: str,
        applicant_ref: str,
        channel: str,
        form: dict[str, Any],
        materials: list[MaterialRef],
        notify_url: str | None,
    ) -> Application:
        reply = await self.upstream.call(
            "POST",
            "/applications",
            json={
                "request_id": request_id,
                "catalog_code": catalog_code,
                "task_code": task_code,
                "region_code": region_code,
                "applicant_ref": applicant_ref,
                "channel": channel,
                "form": form,
                "materials": materials,
                "notify_url": notify_url,
            },
            idempotent=True,
        )
        return self._result(reply, Application)

    async def get(self, project_no: str) -> Application:
        return self._result(
            await self.upstream.call("GET", f"/applications/{quote(project_no, safe='')}"), Application
        )

    async def changes(self, since: int, limit: int = 200) -> Changes:
        reply = await self.upstream.call("GET", "/changes", params={"since": str(since), "limit": str(limit)})
        return self._result(reply, Changes)

    async def supplement(
        self,
        *,
        request_id: str,
        project_no: str,
        supplement_id: str,
        answer: str,
        materials: list[MaterialRef],
    ) -> SupplementReply:
        reply = await self.upstream.call(
            "POST",
            f"/applications/{quote(project_no, safe='')}/supplements",
            json={
                "request_id": request_id,
                "supplement_id": supplement_id,
                "answer": answer,
                "materials": materials,
            },
            idempotent=True,
        )
        return self._result(reply, SupplementReply)
