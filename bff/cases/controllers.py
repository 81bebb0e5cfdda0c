"""Routes of the case domain: apply, list, detail with one timeline, 补正, and the case system's
webhook."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath, QueryParameter

from adapters.cases.callback import SIGNED_HEADERS as CASE_SIGNED
from auth.acting import acts_as
from auth.guards import APPLYING_LEVEL, residents_only
from auth.principal import Principal
from bff.cases.schemas import CaseDetail, CaseIn, CasePage, SupplementIn, WebhookOutcome
from bff.cases.service import CaseService
from bff.idempotency import IdempotencyKey, IdempotencyStore
from bff.platform.openapi import linked, signed_callback
from bff.platform.problems import english

_CASE = {"case_id": "$response.body#/case/id"}
# What an application's answer leads to: reading the case, answering its 补正.
A_CASE = linked(
    {
        "GetCase": ("ApiV1CasesCaseIdGetCase", _CASE),
        "AnswerSupplement": ("ApiV1CasesCaseIdSupplementsSupplement", _CASE),
    }
)


class CaseController(Controller):
    path = "/cases"
    tags = ["cases"]
    guards = [residents_only, APPLYING_LEVEL]

    @post(
        "",
        summary="Apply for an item (form + materials; e-licences in place of uploads)",
        status_code=201,
        opt=acts_as("apply"),
        operation_class=A_CASE,
    )
    async def apply(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        cases: NamedDependency[CaseService],
        idempotency_key: IdempotencyKey,
        data: Annotated[CaseIn, Body()],
    ) -> Response[CaseDetail]:
        return await idempotency.run(
            request, principal.person_id, lambda ctx: cases.apply(ctx, principal, data)
        )

    @get(
        "",
        summary="My cases, newest first (status, promised date and working days left)",
        opt=acts_as("read_cases"),
    )
    async def list_cases(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
        limit: Annotated[int, QueryParameter(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> CasePage:
        return await cases.mine(
            principal, limit, cursor, english=english(request.headers.get("accept-language", ""))
        )

    @get(
        "/{case_id:str}",
        summary="One case: one timeline, the promised date, remaining working days",
        opt=acts_as("read_cases"),
    )
    async def get_case(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        cases: NamedDependency[CaseService],
        case_id: FromPath[str],
    ) -> CaseDetail:
        return await cases.view(
            principal, case_id, english=english(request.headers.get("accept-language", ""))
        )

    @post("/{case_id:str}/supplements", summary="Answer a 补正 request", status_code=201)
    async def supplement(
        self,
        request: Request[Any, Any, Any],
        principal: NamedDependency[Principal],
        idempotency: NamedDependency[IdempotencyStore],
        cases: NamedDependency[CaseService],
        idempotency_key: IdempotencyKey,
        case_id: FromPath[str],
        data: Annotated[SupplementIn, Body()],
    ) -> Response[CaseDetail]:
        row = await cases.own(principal, case_id)
        return await idempotency.run(
            request, principal.person_id, lambda ctx: cases.supplement(ctx, principal, row, data)
        )


class CaseWebhookController(Controller):
    """The case system's signed deliveries. Not keyed by Idempotency-Key: the event id is the key."""

    path = "/case-events"
    tags = ["cases"]

    @post(
        "",
        summary="Case system webhook (HMAC-SHA256 over timestamp.body)",
        operation_class=signed_callback("the case system", CASE_SIGNED),
        status_code=200,
        exclude_from_auth=True,
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        cases: NamedDependency[CaseService],
        data: Annotated[dict[str, Any], Body(description="one case event, signed by the case system")],
    ) -> WebhookOutcome:
        # The signature covers the exact bytes: verify those, not a re-encoding of `data`.
        outcome = await cases.receive_webhook(request.headers, await request.body())
        return WebhookOutcome(outcome=outcome)  # type: ignore[arg-type]
