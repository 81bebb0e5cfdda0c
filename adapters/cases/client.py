"""Typed client for the case system; mutating calls carry our stable request id (de-duplicated)."""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

from adapters.cases.schemas import (
    Application,
    Changes,
    FeePaidReply,
    MaterialRef,
    Refusal,
    SupplementReply,
    Voided,
)
from adapters.http import Reply, Upstream
from adapters.refusal import Refused, result

T = TypeVar("T")


class CaseRefused(Refused[Refusal]):
    """The case system said no; `reason` is its code."""


class CaseClient:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    def _result(self, reply: Reply, type_: type[T]) -> T:
        return result(self.upstream, reply, type_, refusal=Refusal, refused=CaseRefused, label="cases")

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

    async def void(self, request_id: str) -> Voided:
        """Settle an in-doubt request: its answer if it arrived, else refused for good if it comes."""
        reply = await self.upstream.call(
            "POST", f"/requests/{quote(request_id, safe='')}/void", json={}, idempotent=True
        )
        return self._result(reply, Voided)

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

    async def fee_paid(
        self,
        *,
        request_id: str,
        fee_id: str,
        out_trade_no: str,
        transaction_id: str,
        amount_fen: int,
        paid_at: str,
    ) -> FeePaidReply:
        """Tell the case system a fee was paid (de-duplicated by request id; the same transaction
        again answers the same)."""
        reply = await self.upstream.call(
            "POST",
            f"/fees/{quote(fee_id, safe='')}/paid",
            json={
                "request_id": request_id,
                "out_trade_no": out_trade_no,
                "transaction_id": transaction_id,
                "amount_fen": amount_fen,
                "paid_at": paid_at,
            },
            idempotent=True,
        )
        return self._result(reply, FeePaidReply)
