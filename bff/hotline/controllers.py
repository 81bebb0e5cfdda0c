"""Routes of 12345 tickets: suggestions before filing, file, list, detail with the timeline,
answer a request for information, rate the handling (回访), and 12345's signed step webhook."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from adapters.hotline.callback import SIGNED_HEADERS as HOTLINE_SIGNED
from auth.guards import BOOKING_LEVEL, residents_only
from auth.principal import Principal
from bff.hotline.schemas import (
    HotlineNotifyOutcome,
    HotlineRatingIn,
    HotlineReplyIn,
    Suggestions,
    TicketDetail,
    TicketIn,
    TicketPage,
)
from bff.hotline.service import HotlineService
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.platform.openapi import signed_callback
from bff.platform.problems import english


class HotlineAnswerController(Controller):
    path = "/hotline/answers"
    tags = ["hotline"]
    # Read before filing: any signed-in resident (12345's answers are public, the call is not free).
    guards = [residents_only]
    cache_control = CacheControlHeader(no_store=True)

    @get(
        "",
        summary="Before filing a consultation: 12345 knowledge-base answers and matching items",
    )
    async def suggest(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        hotline: NamedDependency[HotlineService],
        q: Annotated[str, QueryParameter(min_length=1, max_length=200)],
        region: Annotated[str | None, QueryParameter(pattern=r"^[0-9]{6}$")] = None,
    ) -> Suggestions:
        return await hotline.suggest(q, region, english=english(request.headers.get("accept-language", "")))


class HotlineController(Controller):
    path = "/hotline/tickets"
    tags = ["hotline"]
    # 12345 calls the resident back: a verified phone (L2) is what filing needs.
    guards = [residents_only, BOOKING_LEVEL]
    cache_control = CacheControlHeader(no_store=True)

    @post(
        "",
        summary="File a 12345 ticket (consultation, complaint, report, suggestion, praise)",
        status_code=201,
    )
    async def file(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        hotline: NamedDependency[HotlineService],
        idempotency_key: IdempotencyKey,
        data: Annotated[TicketIn, Body()],
    ) -> Response[TicketDetail]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: hotline.file(ctx, principal, data)
        )

    @get("", summary="My 12345 tickets, newest first (status, deadline, awaiting my rating)")
    async def list_tickets(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        hotline: NamedDependency[HotlineService],
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> TicketPage:
        return await hotline.mine(
            principal, limit, cursor, english=english(request.headers.get("accept-language", ""))
        )

    @get("/{ticket_id:str}", summary="One 12345 ticket: every step on its timeline, the deadline")
    async def get_ticket(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        hotline: NamedDependency[HotlineService],
        ticket_id: FromPath[str],
    ) -> TicketDetail:
        return await hotline.view(
            principal, ticket_id, english=english(request.headers.get("accept-language", ""))
        )

    @post("/{ticket_id:str}/replies", summary="Add the information 12345 asked for", status_code=201)
    async def reply(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        hotline: NamedDependency[HotlineService],
        idempotency_key: IdempotencyKey,
        ticket_id: FromPath[str],
        data: Annotated[HotlineReplyIn, Body()],
    ) -> Response[TicketDetail]:
        row = await hotline.own(principal, ticket_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: hotline.reply(ctx, principal, row, data)
        )

    @post(
        "/{ticket_id:str}/rating", summary="Rate the handling once 12345 has answered (回访)", status_code=201
    )
    async def rate(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        hotline: NamedDependency[HotlineService],
        idempotency_key: IdempotencyKey,
        ticket_id: FromPath[str],
        data: Annotated[HotlineRatingIn, Body()],
    ) -> Response[TicketDetail]:
        row = await hotline.own(principal, ticket_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: hotline.rate(ctx, principal, row, data)
        )


class HotlineWebhookController(Controller):
    """12345's signed step webhooks. Not keyed by Idempotency-Key: 12345's event id is the key."""

    path = "/hotline/12345/notify"
    tags = ["hotline"]

    @post(
        "",
        summary="12345 step webhook (HMAC-SHA256 over timestamp.body)",
        operation_class=signed_callback("the 12345 hotline", HOTLINE_SIGNED),
        status_code=200,
        exclude_from_auth=True,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        hotline: NamedDependency[HotlineService],
        data: Annotated[dict[str, Any], Body(description="one ticket step, signed by 12345")],
    ) -> HotlineNotifyOutcome:
        # The signature covers the exact bytes: verify those, not a re-encoding of `data`.
        outcome = await hotline.receive_callback(request.headers, await request.body())
        return HotlineNotifyOutcome(outcome=outcome)  # type: ignore[arg-type]
